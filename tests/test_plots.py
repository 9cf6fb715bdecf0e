"""Per-gene figures (seq2exp_plugin.discover.plots)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from seq2exp_plugin.discover.plots import CLASS_COLORS, downsample_max, plot_gene
from seq2exp_plugin.data.windows import WindowRecord

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _has_colour(path, hex_colour: str, tol: float = 0.02) -> int:
    from matplotlib.image import imread

    img = imread(str(path))[..., :3]
    rgb = np.array([int(hex_colour[i: i + 2], 16) for i in (1, 3, 5)]) / 255
    return int((np.abs(img - rgb).max(axis=-1) < tol).sum())


def test_downsample_max():
    v = np.zeros(10_000)
    v[1234] = 7.0  # a one-bp spike survives
    v[-1] = 3.0    # so does the last, partial bin
    out, b = downsample_max(v, 1000)
    assert b == 10 and out.shape == (1000,)
    assert out[123] == 7.0 and out[-1] == 3.0 and out.sum() == 10.0
    out, b = downsample_max(np.arange(7, dtype=float), 3)
    assert b == 3 and out.tolist() == [2.0, 5.0, 6.0]
    out, b = downsample_max(np.r_[np.nan, np.nan, 1.0, np.nan], 2)
    assert np.isnan(out[0]) and out[1] == 1.0
    same, b = downsample_max(np.arange(5.0), 10)
    assert b == 1 and same.tolist() == [0, 1, 2, 3, 4]


def _example(L, reverse, rng):
    """A gene with an enhancer at genomic offset L // 4; arrays in window order (flipped if reversed)."""
    import pandas as pd

    start = 1_000_000
    rec = WindowRecord("GENE1", "chr7", start, start + L, "-" if reverse else "+", reverse=reverse,
                       tss=start + L // 2)
    sig = rng.gamma(1.0, 1.0, (3, L))
    sig[:, L // 4: L // 4 + 300] += 20
    score = np.clip(0.05 + 0.05 * rng.standard_normal(L), 0, 1)
    score[L // 4: L // 4 + 300] = 0.9
    if reverse:
        sig, score = sig[:, ::-1], score[::-1]
    truth = pd.DataFrame({
        "chrom": ["chr7"] * 4, "gene_id": ["GENE1"] * 4,
        "start": [start + L // 4, start + L // 2 - 300, start + L // 8, start + 3 * L // 4],
        "end": [start + L // 4 + 300, start + L // 2 + 200, start + L // 8 + 250, start + 3 * L // 4 + 250],
        "class": ["R_ag", "promoter", "decoy", "inactive"],
    })
    return rec, sig, score, truth


def _lane_extents(fig, label):
    ax = fig.axes[-1]
    out = []
    for coll in ax.collections:
        if coll.get_label() == label:
            for path in coll.get_paths():
                xs = path.vertices[:, 0]
                out.append((float(xs.min()), float(xs.max())))
    return sorted(out)


@pytest.mark.parametrize("reverse", [False, True])
def test_figure_lanes_in_genomic_coordinates(reverse):
    from seq2exp_plugin.discover.plots import gene_figure

    L = 8_000
    rec, sig, score, truth = _example(L, reverse, np.random.default_rng(2))
    fig = gene_figure(rec, signals={"DNase": sig[1]}, score=score, truth=truth,
                      peaks=[(rec.start + L // 4 - 50, rec.start + L // 4 + 350)])
    # the element called from the window-order score sits on the truth enhancer (genomic)
    el = _lane_extents(fig, "_lane:elements")
    assert el == _lane_extents(fig, "_lane:truth:R_ag") == [(rec.start + L // 4, rec.start + L // 4 + 300)]
    assert _lane_extents(fig, "_lane:MACS3 peaks") == [(rec.start + L // 4 - 50, rec.start + L // 4 + 350)]
    assert fig.axes[-1].get_xlim() == (rec.start, rec.end)
    # the signal panel's peak is at the same genomic place
    line = fig.axes[0].lines[0]
    x, y = line.get_data()
    assert rec.start + L // 4 - 5 <= x[int(np.argmax(y))] <= rec.start + L // 4 + 300


@pytest.mark.parametrize("L,reverse", [(8_000, False), (200_000, True)])
def test_plot_gene_png(tmp_path, L, reverse):
    rng = np.random.default_rng(0)
    rec, sig, score, truth = _example(L, reverse, rng)
    peaks = [(rec.start + L // 4 - 50, rec.start + L // 4 + 350)]
    path = plot_gene(tmp_path / "sub" / "g.png", rec, signals={"H3K27ac": sig[0], "DNase": sig[1], "Hi-C": sig[2]},
                     score=score, peaks=peaks, truth=truth, observed=1.23, predicted=1.31)
    w, h = _png_size(path)
    assert 1000 <= w <= 2000 and 500 <= h <= 1400
    assert 20_000 < path.stat().st_size < 2_000_000
    # every truth class is drawn in its colour (a 250-bp element is still visible at 200 kb)
    for cls in ("R_ag", "decoy", "inactive", "promoter"):
        assert _has_colour(path, CLASS_COLORS[cls]) > 20, cls
    assert not list((tmp_path / "sub").glob(".*"))


def test_plot_without_truth_has_no_truth_colours(tmp_path):
    rng = np.random.default_rng(1)
    rec, sig, score, _ = _example(8_000, False, rng)
    path = plot_gene(tmp_path / "g.png", rec, signals={"DNase": sig[1]}, score=score)
    assert _png_size(path)[0] > 0
    assert _has_colour(path, CLASS_COLORS["R_ag"]) == 0
    assert _has_colour(path, CLASS_COLORS["decoy"]) == 0


def test_plot_bad_input_writes_nothing(tmp_path):
    rec = WindowRecord("G", "chr1", 0, 1000)
    with pytest.raises(ValueError, match="999 scores"):
        plot_gene(tmp_path / "g.png", rec, score=np.zeros(999))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("reverse", [False, True])
def test_generator_track_under_the_mask_score(reverse):
    from seq2exp_plugin.discover.plots import gene_figure

    L = 8_000
    rec, sig, score, truth = _example(L, reverse, np.random.default_rng(3))
    generator = np.zeros(L)
    generator[100:200] = 0.9  # window order: genomic order flipped when reversed
    fig = gene_figure(rec, signals={"DNase": sig[1]}, score=score, generator=generator, truth=truth)
    assert len(fig.axes) == 4  # DNase, mask score, generator, lanes
    ax = fig.axes[2]
    assert ax.get_ylabel().startswith("generator")
    x, y = ax.lines[0].get_data()
    peak = x[int(np.argmax(y))]
    want = rec.start + (L - 200 if reverse else 100)
    assert want - 5 <= peak <= want + 100
    assert len(gene_figure(rec, signals={"DNase": sig[1]}, score=score).axes) == 3


def test_two_cell_types_side_by_side_get_a_panel_or_lane_each():
    """Masks, called elements, peaks and truths given per cell type (`predict --cell-types`)."""
    from seq2exp_plugin.discover.plots import gene_figure

    L = 8_000
    rec, sig, score, truth = _example(L, False, np.random.default_rng(4))
    other = np.zeros(L)
    other[100:200] = 0.8
    fig = gene_figure(rec, signals={"DNase A": sig[1], "DNase B": sig[0]}, score={"A": score, "B": other},
                      peaks={"peaks A": [(rec.start, rec.start + 500)], "peaks B": []},
                      truth={"truth A": truth, "truth B": truth.iloc[:0]})
    assert [ax.get_ylabel().split("\n")[0] for ax in fig.axes[2:4]] == ["mask score A", "mask score B"]
    assert _lane_extents(fig, "_lane:elements A") == [(rec.start + L // 4, rec.start + L // 4 + 300)]
    assert _lane_extents(fig, "_lane:elements B") == [(rec.start + 100, rec.start + 200)]
    assert _lane_extents(fig, "_lane:peaks A") == [(rec.start, rec.start + 500)]
    lanes = [t.get_text() for t in fig.axes[-1].get_yticklabels()]
    assert lanes == ["elements A (1)", "elements B (1)", "peaks A (1)", "peaks B (0)", "truth A (4)", "truth B (0)"]
    assert "kept 3.8% A, 1.2% B" in fig._suptitle.get_text()
