# pwoa-lab: the two commands of a fresh machine are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench setup-git browser-test explorer clean-venv

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

EXPLORER_PORT ?= 8866
explorer: $(STAMP)  ## the classroom explorer: notebooks/explorer.ipynb as a web app, no code shown (Voila)
	$(PY) -c "import voila" 2>/dev/null || $(PY) -m pip install -q -e '.[explorer]'
	$(VENV)/bin/voila notebooks/explorer.ipynb --port=$(EXPLORER_PORT) $(VOILA_ARGS)

bench: $(STAMP)  ## benchmarks (not part of the tests)
	$(PY) bench/run_all.py

clean-venv:
	rm -rf $(VENV)
