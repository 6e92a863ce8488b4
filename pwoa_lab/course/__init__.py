"""The course: plots, widgets, the classroom explorer and the notebooks' one-line set-up. The top layer.

- `plots`: figures of the result tables (every plot takes `ax=`); `widgets`: ipywidgets controls around plain
  `*_view` functions; `explorer`: the classroom web app (Voila); `serving`: its Voila command for a room;
  `predict`: predict-then-see exercises (a guess locked in before a key result, shown beside it after);
- `notebook_setup`: `course.setup(DATASET)` gives a notebook its smoke switch, preset, cache folder, teacher and
  seeds; `course.execute_notebook` runs one headless.

    from pwoa_lab import course
    C = course.setup(DATASET)
"""
from pwoa_lab.course.notebook_setup import PRESETS, Course, execute_notebook, setup, show, smoke_mode

__all__ = ["Course", "setup", "show", "smoke_mode", "execute_notebook", "PRESETS"]
