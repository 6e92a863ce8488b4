"""Predict, then see (pwoa_lab.course.predict): the reveal sentence for each case, the lock-in button, and a
reveal without a guess (what every headless notebook run shows)."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from pwoa_lab.course import predict as P  # noqa: E402


@pytest.fixture(autouse=True)
def no_locked_guesses(monkeypatch):
    # guesses are kept per key for the kernel's lifetime; every test starts with none
    monkeypatch.setattr(P, "_LOCKED", {})


@pytest.fixture
def shown(monkeypatch) -> list:
    """What `predict` and `reveal` display, in order (instead of a notebook's output area)."""
    import IPython.display

    out: list = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: out.extend(objs))
    return out


def guess(value: float | None, unit: str = "%", lo: float = 0, hi: float = 100) -> P.Prediction:
    return P.Prediction("What PGD accuracy?", unit, lo, hi, "q", value)


def test_a_guess_inside_the_interval_says_the_data_cannot_tell_it_apart():
    r = P.compare(guess(33.0), 30.0, 25.0, 35.0)
    assert (r.verdict, r.gap) == ("inside", 3.0)
    assert "within the measurement's 95% interval 25.0% to 35.0%" in r.sentence
    assert "cannot tell it apart from the measured 30.0%" in r.sentence


def test_a_guess_above_the_interval_says_the_real_value_is_lower():
    r = P.compare(guess(40.0), 30.0, 25.0, 35.0)
    assert (r.verdict, r.gap) == ("above", 10.0)
    assert r.sentence.startswith("Your guess of 40.0% is 10.0 points above the measured 30.0%, outside its 95%")
    assert "the real value is lower than you expected, by more than the measurement's noise" in r.sentence
    # a miss of a quarter of the range or more is called a wide one
    assert "much lower than you expected" in P.compare(guess(90.0), 30.0, 25.0, 35.0).sentence


def test_a_guess_below_the_interval_says_the_real_value_is_higher():
    r = P.compare(guess(10.0), 30.0, 25.0, 35.0)
    assert (r.verdict, r.gap) == ("below", -20.0)
    assert "20.0 points below the measured 30.0%" in r.sentence
    assert "the real value is higher than you expected" in r.sentence and "much" not in r.sentence


def test_the_interval_edges_count_as_inside():
    assert P.compare(guess(25.0), 30.0, 25.0, 35.0).verdict == "inside"
    assert P.compare(guess(35.0), 30.0, 25.0, 35.0).verdict == "inside"
    assert P.compare(guess(35.1), 30.0, 25.0, 35.0).verdict == "above"


def test_no_guess_says_so_and_gives_the_measured_value():
    r = P.compare(guess(None), 30.0, 25.0, 35.0)
    assert (r.verdict, r.gap) == ("no guess", None)
    assert r.sentence == "No guess locked in: the measured value is 30.0% (95% interval 25.0% to 35.0%)."
    assert P.compare(guess(None), 30.0).sentence == "No guess locked in: the measured value is 30.0%."


def test_without_an_interval_a_near_guess_is_close_and_a_far_one_a_miss():
    ratio = guess(5.0, unit="x", lo=0, hi=30)            # 5% of the range: 1.5
    r = P.compare(ratio, 3.81)
    assert r.verdict == "close" and "within 1.2 of the measured 3.8x" in r.sentence and "no interval" in r.sentence
    ratio.value = 12.0
    r = P.compare(ratio, 3.81, -math.inf, math.inf)      # one seed: an infinite interval is no interval
    assert (r.verdict, r.low, r.high) == ("above", None, None)
    assert "is 8.2 above the measured 3.8x: the real value is much lower than you expected" in r.sentence


def test_a_measurement_without_a_number_is_said_in_words():
    assert P.compare(guess(5.0, "x"), math.nan).sentence == \
        "Your guess was 5.0x, but the measurement gave no number to compare with."
    assert P.compare(guess(None), math.nan).verdict == "no measurement"


def test_lock_in_records_the_value_and_disables_the_input(shown):
    p = P.predict("Naive pruning at 8x: PGD accuracy?", unit="%", lo=0, hi=100, key="02-naive")
    c = p.controls
    assert shown == [c.box] and p.value is None
    assert not (c.slider.disabled or c.text.disabled or c.button.disabled)
    c.slider.value = 12.0
    assert c.text.value == 12.0                       # the slider and the number box are one input
    c.text.value = 17.5
    c.button.click()
    assert p.value == 17.5
    assert c.slider.disabled and c.text.disabled and c.button.disabled
    assert c.button.description == "guess locked in" and "17.5%" in c.status.value
    # the reveal now compares that guess
    assert P.compare(p, 30.0, 25.0, 35.0).verdict == "below"


def test_the_number_box_keeps_the_guess_in_range(shown):
    p = P.predict("A ratio?", unit="x", lo=0, hi=30, key="ratio")
    p.controls.text.value = 99.0
    p.controls.button.click()
    assert p.value == 30.0


def test_a_rerun_predict_cell_keeps_the_locked_guess_until_forgotten(shown):
    first = P.predict("Q?", key="k")
    first.controls.slider.value = 42.0
    first.controls.button.click()
    again = P.predict("Q?", key="k")                   # the student re-runs the cell after seeing the result
    assert again.value == 42.0 and again.controls.slider.disabled and again.controls.slider.value == 42.0
    P.forget("k")
    fresh = P.predict("Q?", key="k")
    assert fresh.value is None and not fresh.controls.button.disabled


def test_reveal_without_a_guess_shows_the_measured_value_and_a_figure(shown):
    from IPython.display import HTML, Image

    p = P.predict("Q?", key="headless")               # displayed, never clicked: a headless run
    shown.clear()
    open_before = plt.get_fignums()                    # other tests of this process may have left figures open
    P.reveal(p, 30.0, 25.0, 35.0, meaning="The teacher keeps 34.0%.")
    html, image = shown
    assert isinstance(html, HTML) and isinstance(image, Image)
    assert "No guess locked in: the measured value is 30.0% (95% interval 25.0% to 35.0%)." in html.data
    assert "your guess: <b>none locked in</b>" in html.data and "The teacher keeps 34.0%." in html.data
    assert image.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == open_before            # its own figure was closed once shown


def test_reveal_with_a_guess_and_no_number(shown):
    p = P.predict("Q?", unit="x", lo=0, hi=30, key="nan")
    p.controls.slider.value = 6.0
    p.controls.button.click()
    shown.clear()
    P.reveal(p, math.nan, meaning="AdvPrune never reached PwoA's robustness.")
    assert "Your guess was 6.0x, but the measurement gave no number" in shown[0].data
    assert "measured: <b>no number</b>" in shown[0].data


def test_plot_reveal_draws_into_a_given_axes():
    fig, ax = plt.subplots()
    r = P.compare(guess(40.0), 120.0, 110.0, 130.0)    # measured outside the question's range stays in view
    assert P.plot_reveal(r, 0, 100, ax=ax) is fig
    assert ax.get_xlim()[1] > 130.0
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["95% interval", "measured 120.0%", "your guess 40.0%"]
    plt.close(fig)
