"""evolve.csv, hyp_evolve.yaml and evolve.png: upstream byte format, torn lines, concurrent writers."""

from __future__ import annotations

import multiprocessing
import warnings

import numpy as np
import pytest
import yaml

from yolo_ray.config import UserError, load_hyp
from yolo_ray.evolution import EVOLVE_RESULT_KEYS, append_row, best_row, plot_evolve, read_history, write_hyp_evolve

HYP = {**load_hyp(), "anchors": 3.0}


def upstream_header(keys) -> str:
    return ("%20s," * len(keys) % tuple(keys)).rstrip(",")


def upstream_row(values) -> str:
    return ("%20.5g," * len(values) % tuple(values)).rstrip(",")


def results_for(i: int) -> list[float]:
    return [0.1 + i / 1000, 0.2, 0.3 + i / 7, 0.123456789 * (i + 1), 0.05, 0.04, 1 / (i + 3)]


@pytest.mark.timeout(10)
def test_round_trip_is_upstream_bytes_and_loadtxt_readable(tmp_path):
    csv = tmp_path / "evolve.csv"
    hyps = [{**HYP, "lr0": 0.01 * (i + 1) / 3, "anchors": 3.0 + i} for i in range(5)]
    for i, hyp in enumerate(hyps):
        append_row(csv, results_for(i), hyp)
    keys = [*EVOLVE_RESULT_KEYS, *HYP]
    lines = csv.read_text().split("\n")
    assert lines[0] == upstream_header(keys)
    assert lines[1:] == [upstream_row([*results_for(i), *hyp.values()]) for i, hyp in enumerate(hyps)] + [""]

    history = read_history(csv)
    assert list(history.columns) == keys and len(history) == 5
    for i, hyp in enumerate(hyps):
        expected = [float("%.5g" % v) for v in [*results_for(i), *hyp.values()]]
        assert history.iloc[i].tolist() == expected
    assert np.loadtxt(csv, delimiter=",", skiprows=1).shape == (5, len(keys))


@pytest.mark.timeout(10)
def test_results_by_name_and_missing_file(tmp_path):
    csv = tmp_path / "sub" / "evolve.csv"
    assert read_history(csv).empty and list(read_history(csv).columns) == list(EVOLVE_RESULT_KEYS)
    append_row(csv, dict(zip(EVOLVE_RESULT_KEYS, results_for(0))), {"lr0": 0.01, "box": 0.05})
    append_row(csv, results_for(1), {"box": 0.07, "lr0": 0.02})  # dict order differs from the header
    history = read_history(csv)
    assert history["lr0"].tolist() == [0.01, 0.02] and history["box"].tolist() == [0.05, 0.07]
    with pytest.raises(UserError, match=r"missing \['box'\], extra \['anchors'\]"):
        append_row(csv, results_for(2), {"lr0": 0.01, "anchors": 3.0})
    with pytest.raises(ValueError, match="expected 7 results"):
        append_row(csv, [0.1, 0.2], {"lr0": 0.01, "box": 0.05})
    assert len(read_history(csv)) == 2


@pytest.mark.timeout(10)
def test_torn_last_line_is_dropped_then_cut_by_the_next_append(tmp_path):
    csv = tmp_path / "evolve.csv"
    for i in range(3):
        append_row(csv, results_for(i), HYP)
    full_row = upstream_row([*results_for(3), *HYP.values()])
    with open(csv, "a") as f:
        f.write(full_row[:100])  # a writer killed mid-row
    with pytest.warns(UserWarning, match="torn last line"):
        assert len(read_history(csv)) == 3
    with pytest.warns(UserWarning, match="torn last line"):
        append_row(csv, results_for(4), HYP)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = read_history(csv)
    assert len(history) == 4 and history.iloc[3, 0] == float("%.5g" % results_for(4)[0])
    assert np.loadtxt(csv, delimiter=",", skiprows=1).shape == (4, 7 + len(HYP))


@pytest.mark.timeout(10)
def test_complete_last_line_with_missing_fields_is_an_error_not_a_torn_line(tmp_path):
    csv = tmp_path / "evolve.csv"
    for i in range(2):
        append_row(csv, results_for(i), HYP)
    with open(csv, "a") as f:
        f.write("0.5, 0.4, 0.3\n")  # ends with its newline: written whole, so wrong rather than torn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserError, match="line 4: expected 36 comma-separated values"):
            read_history(csv)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "body, message",
    [
        ("{row}\n0.5,0.4\n{row}\n", "line 3: expected 36 comma-separated values"),
        ("{row}\n{bad}\n{row}\n", "line 3: values must be numbers"),
    ],
)
def test_malformed_inner_lines_are_errors(tmp_path, body, message):
    csv = tmp_path / "evolve.csv"
    keys = [*EVOLVE_RESULT_KEYS, *HYP]
    row = upstream_row([*results_for(0), *HYP.values()])
    bad = row.replace("0.2", "abc", 1)
    csv.write_text(upstream_header(keys) + "\n" + body.format(row=row, bad=bad))
    with pytest.raises(UserError, match=f"{csv}, {message}"):
        read_history(csv)


@pytest.mark.timeout(10)
def test_bad_header_is_an_error(tmp_path):
    csv = tmp_path / "evolve.csv"
    csv.write_text("precision,recall,lr0\n0.1,0.2,0.01\n")
    with pytest.raises(UserError, match="header must start with the result columns"):
        read_history(csv)
    with pytest.raises(UserError, match="header must start with the result columns"):
        append_row(csv, results_for(0), {"lr0": 0.01})


@pytest.mark.timeout(10)
def test_upstream_file_is_read_and_continued_in_its_column_order(tmp_path):
    # As upstream writes it with --noautoanchor: 28 hyp columns in hyp-file order.
    csv = tmp_path / "evolve.csv"
    hyp = load_hyp()
    keys = [*EVOLVE_RESULT_KEYS, *hyp]
    csv.write_text(upstream_header(keys) + "\n" + upstream_row([*results_for(0), *hyp.values()]) + "\n")
    shuffled = dict(reversed(list({**hyp, "lr0": 0.02}.items())))
    append_row(csv, results_for(1), shuffled)
    history = read_history(csv)
    assert list(history.columns) == keys
    assert history["lr0"].tolist() == [0.01, 0.02] and history["momentum"].tolist() == [0.937, 0.937]
    assert csv.read_text().split("\n")[2] == upstream_row([*results_for(1), *{**hyp, "lr0": 0.02}.values()])


def _append_many(csv_path: str, writer: int, n: int) -> None:
    for i in range(n):
        append_row(csv_path, [writer, i, 0.3, 0.4, 0.05, 0.04, 0.03], HYP)


@pytest.mark.timeout(30)
def test_two_processes_appending_never_tear_rows(tmp_path):
    csv = tmp_path / "evolve.csv"
    n = 200
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(csv), w, n)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(25)
        assert p.exitcode == 0
    lines = csv.read_text().split("\n")
    assert lines.count(lines[0]) == 1 and lines[-1] == ""
    assert all(line.count(",") == 6 + len(HYP) for line in lines[:-1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = read_history(csv)
    pairs = set(zip(history.iloc[:, 0], history.iloc[:, 1]))
    assert len(history) == 2 * n and pairs == {(w, i) for w in (1, 2) for i in range(n)}


@pytest.mark.timeout(10)
def test_hyp_evolve_yaml_holds_the_best_row(tmp_path):
    csv, out = tmp_path / "evolve.csv", tmp_path / "hyp_evolve.yaml"
    maps = [(0.5, 0.2), (0.4, 0.35), (0.9, 0.1), (0.3, 0.3)]  # fitness 0.23, 0.355, 0.18, 0.3
    for i, (map50, map5095) in enumerate(maps):
        append_row(csv, [0.6, 0.5, map50, map5095, 0.05, 0.04, 0.03], {"lr0": 0.01 + i / 100, "anchors": 3.0})
    best = best_row(read_history(csv))
    assert best.index == 1 and abs(best.fitness - 0.355) < 1e-12 and best.hyp == {"lr0": 0.02, "anchors": 3.0}
    write_hyp_evolve(csv, out, generations=10)
    text = out.read_text()
    assert text == (
        "# YOLOv5 Hyperparameter Evolution Results\n"
        "# Best generation: 1\n"
        "# Last generation: 9\n"
        "#    metrics/precision,       metrics/recall,      metrics/mAP_0.5, metrics/mAP_0.5:0.95,"
        "         val/box_loss,         val/obj_loss,         val/cls_loss\n"
        "#                  0.6,                  0.5,                  0.4,                 0.35,"
        "                 0.05,                 0.04,                 0.03\n"
        "\n"
        "lr0: 0.02\nanchors: 3.0\n"
    )
    write_hyp_evolve(csv, out)
    assert "# Last generation: 3\n" in out.read_text()
    assert yaml.safe_load(out.read_text()) == {"lr0": 0.02, "anchors": 3.0}


@pytest.mark.timeout(20)
def test_evolve_png_is_written_and_refreshed(tmp_path):
    csv = tmp_path / "evolve.csv"
    for i in range(6):
        append_row(csv, results_for(i), {**HYP, "lr0": 0.001 * (i + 1)})
    png = plot_evolve(csv, dpi=40)
    assert png == tmp_path / "evolve.png"
    first = png.read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    append_row(csv, [0.9, 0.9, 0.9, 0.9, 0.01, 0.01, 0.01], {**HYP, "lr0": 0.05})
    plot_evolve(csv, keys=["lr0", "momentum"], dpi=40)
    assert png.read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evolve.csv", "evolve.csv.lock", "evolve.png"]
