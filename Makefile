# pwoa-lab: the two commands of a fresh machine are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench setup-git browser-test explorer lab clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev,cluster]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## the quick Figure 1 on the embedded digits data (no files needed)
	$(VENV)/bin/pwoa-lab figure1 --dataset digits --preset quick --rates 2,4,8 --scope hidden --seeds 0,1,2 \
		--out results/figure1_digits

test: $(STAMP)  ## the whole test suite (notebooks in smoke mode included; the real-browser test is separate)
	$(PY) -m pytest -q -m "not browser"

browser-test: $(STAMP)  ## the real-browser widget test (needs Debian chromium and `pip install playwright`)
	$(PY) -m pytest -q -m browser -s

setup-git: $(STAMP)  ## once per clone: the nbstripout git filter strips notebook outputs at `git add`
	$(VENV)/bin/nbstripout --install --attributes .gitattributes

# The course in JupyterLab, without the Jupyter news pop-up (it would cover the first plots); an overrides.json the
# user already has is left as it is.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings
lab: $(STAMP)  ## JupyterLab on the course notebooks, the news pop-up and update check off
	mkdir -p $(LAB_SETTINGS)
	test -f $(LAB_SETTINGS)/overrides.json || printf '%s\n' \
		'{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' \
		> $(LAB_SETTINGS)/overrides.json
	$(VENV)/bin/jupyter lab notebooks/ --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
		$(if $(filter 0,$(shell id -u)),--allow-root)

# The explorer: `make explorer` on this machine; `make explorer HOST=0.0.0.0 PORT=8866` for a room (auto-compute
# off, at most MAX_RUNS runs a request, default 6; SHARED=1 does the same behind a proxy on this machine).
# CULL_IDLE: seconds a kernel whose page is gone is kept.
# HOST and PORT are read from the command line only: some shells export HOST as the machine's name.
EXPLORER_HOST := $(if $(filter command line,$(origin HOST)),$(HOST),127.0.0.1)
EXPLORER_PORT := $(if $(filter command line,$(origin PORT)),$(PORT),8866)
CULL_IDLE ?= 600
explorer: $(STAMP)  ## the classroom explorer: notebooks/explorer.ipynb as a web app, no code shown (Voila)
	$(PY) -c "import voila" 2>/dev/null || $(PY) -m pip install -q -e '.[explorer]'
	$(VENV)/bin/pwoa-lab explorer --host=$(EXPLORER_HOST) --port=$(EXPLORER_PORT) --cull-idle=$(CULL_IDLE) \
		$(if $(MAX_RUNS),--max-runs=$(MAX_RUNS)) $(if $(filter 1 yes true,$(SHARED)),--shared) -- $(VOILA_ARGS)

bench: $(STAMP)  ## benchmarks (not part of the tests)
	$(PY) bench/run_all.py

clean-venv:
	rm -rf $(VENV)
