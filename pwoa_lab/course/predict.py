"""Predict, then see: before a key result the student locks in a guess; after it, the guess is shown beside it.

- `Prediction`: the question, its unit and range, and the guess (None until locked in).
- `compare(prediction, measured, low, high) -> Reveal`: the gap and one plain sentence on what it means (pure).
- `predict(question, ...)`: a slider, a number box and a "lock in my guess" button -> its `Prediction`.
- `reveal(prediction, measured, ...)`: the guess beside the measured value, the sentence and a small figure
  (`plot_reveal`, which takes `ax=`).

Guesses live in the running kernel only: nothing is written or sent anywhere. A notebook run headless (as the
tests run them) locks nothing in, and `reveal` then says "No guess locked in" and shows the measured value.
"""
from __future__ import annotations

import html
import io
import math
from collections import namedtuple
from dataclasses import dataclass, field

import matplotlib.pyplot as plt

# Without an interval, a guess this close to the measured value (a share of the question's range) counts as
# close: about what a slider can be set to by eye. A gap of FAR_SHARE or more is called a wide miss.
CLOSE_SHARE = 0.05
FAR_SHARE = 0.25

_LOCKED: dict[str, float] = {}  # key -> locked guess: a re-run predict cell keeps it instead of starting afresh


# the widgets of one prediction, by name (the tests drive them)
Controls = namedtuple("Controls", "box slider text button status")


@dataclass
class Prediction:
    """One question and the student's guess: `value` is None until the guess is locked in."""
    question: str
    unit: str = "%"
    lo: float = 0.0
    hi: float = 100.0
    key: str = ""
    value: float | None = None
    controls: Controls | None = field(default=None, repr=False, compare=False)

    def lock(self, value: float) -> None:
        """Commit `value` (clipped to the range) as the guess."""
        self.value = min(max(float(value), self.lo), self.hi)
        _LOCKED[self.key] = self.value


@dataclass(frozen=True)
class Reveal:
    """A guess beside the measured value: `gap` = guess - measured (None without a guess or a number)."""
    guess: float | None
    measured: float
    low: float | None
    high: float | None
    unit: str
    gap: float | None
    verdict: str  # "no guess", "no measurement", "inside", "close", "above" or "below"
    sentence: str


def fmt(value: float, unit: str) -> str:
    """34.0%, 3.8x, 12.0 s: '%' and 'x' stick to the number, other units follow a space."""
    return f"{value:.1f}{unit}" if unit in ("%", "x", "") else f"{value:.1f} {unit}"


def _gap(gap: float, unit: str) -> str:
    # two accuracies differ by points (not by percent of something), two ratios by a plain number (not a "3x")
    return f"{abs(gap):.1f} points" if unit == "%" else f"{abs(gap):.1f}" if unit == "x" else fmt(abs(gap), unit)


def compare(prediction: Prediction, measured: float, low: float | None = None,
            high: float | None = None) -> Reveal:
    """The guess of `prediction` against `measured` (with its 95% interval `low`..`high`, where there is one)."""
    unit, g, m = prediction.unit, prediction.value, float(measured)
    # an interval that is missing, NaN or infinite (one seed) says nothing: compare without it
    has_iv = low is not None and high is not None and math.isfinite(low) and math.isfinite(high) and low <= high
    low, high = (float(low), float(high)) if has_iv else (None, None)
    iv = f"95% interval {fmt(low, unit)} to {fmt(high, unit)}" if has_iv else ""
    if not math.isfinite(m):
        what = f"Your guess was {fmt(g, unit)}, but" if g is not None else "No guess locked in, and"
        return Reveal(g, m, low, high, unit, None, "no measurement",
                      f"{what} the measurement gave no number to compare with.")
    if g is None:
        return Reveal(None, m, low, high, unit, None, "no guess",
                      f"No guess locked in: the measured value is {fmt(m, unit)}" + (f" ({iv})." if iv else "."))
    gap = g - m
    span = prediction.hi - prediction.lo
    mine = f"Your guess of {fmt(g, unit)}"
    if has_iv and low <= g <= high:
        return Reveal(g, m, low, high, unit, gap, "inside",
                      f"{mine} is within the measurement's {iv}: the data cannot tell it apart from the "
                      f"measured {fmt(m, unit)}.")
    if not has_iv and abs(gap) <= CLOSE_SHARE * span:
        return Reveal(g, m, low, high, unit, gap, "close",
                      f"{mine} is within {_gap(gap, unit)} of the measured {fmt(m, unit)}: close (no interval "
                      f"was measured here, so a gap this small may be noise).")
    side, real = ("above", "lower") if gap > 0 else ("below", "higher")
    much = "much " if abs(gap) >= FAR_SHARE * span else ""
    where = (f", outside its {iv}: the real value is {much}{real} than you expected, by more than the "
             "measurement's noise explains" if has_iv else f": the real value is {much}{real} than you expected "
             "(no interval was measured here, so a small gap may be noise)")
    return Reveal(g, m, low, high, unit, gap, side,
                  f"{mine} is {_gap(gap, unit)} {side} the measured {fmt(m, unit)}{where}.")


# ----------------------------------------------------------------------------------------------- widgets

def predict(question: str, unit: str = "%", lo: float = 0, hi: float = 100, key: str | None = None,
            step: float | None = None) -> Prediction:
    """Show `question` with a slider, a number box and a "lock in my guess" button; -> the `Prediction` (its
    `value` is set when the button is pressed). A guess locked in under `key` stays locked when the cell re-runs."""
    import ipywidgets as widgets
    from IPython.display import display

    p = Prediction(question, unit, float(lo), float(hi), key or question, _LOCKED.get(key or question))
    step = step or (p.hi - p.lo) / 100
    start = p.value if p.value is not None else p.lo + (p.hi - p.lo) / 2
    # the number box is the slider's readout: one number on screen, typed or dragged
    slider = widgets.FloatSlider(value=start, min=p.lo, max=p.hi, step=step, description="my guess",
                                 continuous_update=False, readout=False)
    text = widgets.BoundedFloatText(value=start, min=p.lo, max=p.hi, step=step, layout=widgets.Layout(width="6em"))
    widgets.link((slider, "value"), (text, "value"))  # kernel-side link: it holds in tests and headless runs too
    button = widgets.Button(description="lock in my guess", button_style="primary", icon="lock")
    status = widgets.HTML("Set your guess, then lock it in <i>before</i> you run the cells below.")

    def freeze() -> None:
        # disabled inputs are the point: a guess changed after seeing the result teaches nothing
        slider.disabled = text.disabled = button.disabled = True
        button.description = "guess locked in"
        status.value = (f"Locked in: <b>{html.escape(fmt(p.value, unit))}</b>. Now run the cells that measure it "
                        f"(to guess again: <code>forget({html.escape(repr(p.key))})</code> from "
                        "<code>pwoa_lab.course.predict</code>, then re-run this cell).")

    def on_click(_button) -> None:
        p.lock(text.value)
        freeze()

    button.on_click(on_click)
    if p.value is not None:
        freeze()
    box = widgets.VBox([widgets.HTML(f"<b>Predict first.</b> {html.escape(question)}"),
                        widgets.HBox([slider, text, widgets.Label(unit), button]), status])
    box.add_class("pwoa-predict")
    p.controls = Controls(box, slider, text, button, status)
    display(box)
    return p


def forget(key: str) -> None:
    """Unlock the guess kept under `key`, so that its predict cell starts afresh when run again."""
    _LOCKED.pop(key, None)


def plot_reveal(r: Reveal, lo: float = 0, hi: float = 100, ax: plt.Axes | None = None) -> plt.Figure:
    """The guess, the measured value and its interval on one number line from `lo` to `hi`."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.5, 1.2))
    shown = [v for v in (r.guess, r.measured, r.low, r.high) if v is not None and math.isfinite(v)]
    left, right = min([lo, *shown]), max([hi, *shown])  # a value outside the question's range stays in view
    pad = 0.03 * (right - left or 1)
    ax.set(xlim=(left - pad, right + pad), ylim=(0, 1), yticks=[],
           xlabel={"%": "percent", "x": "times"}.get(r.unit, r.unit))
    ax.spines[["left", "right", "top"]].set_visible(False)
    if r.low is not None:
        ax.axvspan(r.low, r.high, color="tab:blue", alpha=0.2, label="95% interval")
    if math.isfinite(r.measured):
        ax.plot([r.measured], [0.5], "D", color="tab:blue", ms=10, label=f"measured {fmt(r.measured, r.unit)}")
    if r.guess is not None:
        ax.plot([r.guess], [0.5], "o", color="tab:orange", ms=12, mfc="none", mew=2.5,
                label=f"your guess {fmt(r.guess, r.unit)}")
    else:
        ax.text(0.01, 0.85, "no guess locked in", transform=ax.transAxes, fontsize=8, color="gray")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
    return fig


def reveal(prediction: Prediction, measured: float, low: float | None = None, high: float | None = None,
           meaning: str = "") -> None:
    """Show the guess beside `measured` (and its 95% interval `low`..`high`), the sentence of `compare`, the
    notebook's `meaning` line and a small figure (closed once shown)."""
    from IPython.display import HTML, Image, display

    r = compare(prediction, measured, low, high)
    guess = fmt(r.guess, r.unit) if r.guess is not None else "none locked in"
    value = fmt(r.measured, r.unit) if math.isfinite(r.measured) else "no number"
    if r.low is not None:
        value += f" (95% interval {fmt(r.low, r.unit)} to {fmt(r.high, r.unit)})"
    extra = f"<br><i>{html.escape(meaning)}</i>" if meaning else ""
    display(HTML(f'<div class="pwoa-reveal"><b>Predict, then see.</b> {html.escape(prediction.question)}<br>'
                 f"your guess: <b>{html.escape(guess)}</b> &middot; measured: <b>{html.escape(value)}</b><br>"
                 f"{html.escape(r.sentence)}{extra}</div>"))
    # drawn off pyplot's queue and shown as a PNG, whatever the backend (as the course widgets do)
    with plt.ioff():
        fig = plot_reveal(r, prediction.lo, prediction.hi)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=100)
    plt.close(fig)
    display(Image(data=buf.getvalue(), format="png"))
