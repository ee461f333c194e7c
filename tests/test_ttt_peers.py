"""The time-to-accuracy peer drivers' own logic (tests/tools/ttt_*.py, issue 20):
text preparation, the held-out set size and the common curve format. The
peers themselves (transformers, keras-hub) are not needed: the drivers import
them only inside main()."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).parent.parent
sys.path.insert(0, str(REPO / "tests" / "tools"))

import ttt_hf_flax  # noqa: E402
import ttt_keras_hub  # noqa: E402
import ttt_peer_common as common  # noqa: E402


def test_paragraphs_join_hard_wrapped_lines(tmp_path):
    (tmp_path / "b.txt").write_text("second book\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("One line\n  wrapped here.\n\n\nNext para.\n", encoding="utf-8")
    files = common.book_files(str(tmp_path))
    assert common.paragraphs(files) == ["One line wrapped here.", "Next para.", "second book"]


def test_a_folder_without_books_is_one_line(tmp_path):
    with pytest.raises(common.PeerError, match="no .txt files there"):
        common.book_files(str(tmp_path))


def test_a_missing_peer_names_the_extra():
    with pytest.raises(
        common.PeerError, match=r"no_such_peer_mod not installed: pip install 'bert-jax\[peers\]'"
    ):
        common.require_modules("ttt_x", ["json", "no_such_peer_mod"], "no-such-peer")


def _args(**kw):
    base = dict(layers=1, hidden=8, heads=2, intermediate=16, seq_len=16, batch_size=4, threads=1)
    return SimpleNamespace(**{**base, **kw})


def test_curve_lines_and_time_to_target(tmp_path):
    path = tmp_path / "c.jsonl"
    curve = common.Curve(str(path), t0=100.0, target=0.5, max_steps=1000)
    curve.header("hf-flax", _args(), 30, {"versions": {"jax": "x"}})
    assert curve.point(wall_time=110.0, train_t0=104.0, step=10, accuracy=0.2) is False
    assert curve.point(wall_time=120.0, train_t0=104.0, step=20, accuracy=0.5) is True
    curve.finish(4.0)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0]["pipeline"] == "hf-flax"
    assert lines[0]["model"] == {"layers": 1, "hidden": 8, "heads": 2, "intermediate": 16, "vocab_size": 30}
    assert lines[1] == {"wall_s": 10.0, "train_s": 6.0, "step": 10, "mlm_accuracy": 0.2}
    assert lines[3] == {"data_prep_s": 4.0, "target": 0.5, "reached": True, "time_to_target_s": 20.0}


def test_curve_stops_at_max_steps_or_time_without_reaching(tmp_path):
    curve = common.Curve(str(tmp_path / "c.jsonl"), t0=0.0, target=0.9, max_steps=20, max_train_s=50.0)
    assert curve.point(wall_time=10.0, train_t0=5.0, step=10, accuracy=0.1) is False
    assert curve.point(wall_time=20.0, train_t0=5.0, step=20, accuracy=0.1) is True
    assert curve.point(wall_time=60.0, train_t0=5.0, step=15, accuracy=0.1) is True
    assert curve.time_to_target is None


def test_keras_strings_are_packed_paragraphs_and_long_ones_are_cut():
    paras = ["a b c", "d e", "f g h i j k l"]
    assert ttt_keras_hub.pack(paras, 4) == ["a b c d", "e f g h", "i j k l"]


class _CountingTokenizer:
    """Stands in for a `tokenizers` tokenizer: one id per word, plus [CLS] and [SEP]."""

    def encode_batch(self, texts):
        return [SimpleNamespace(ids=[0] * (len(t.split()) + 2)) for t in texts]


def test_hf_held_out_prefix_gives_exactly_the_asked_sequences():
    # 8 tokens a row, blocks of 16: two rows make one sequence.
    paras = ["w w w w w w"] * 10
    assert ttt_hf_flax.held_out_prefix(_CountingTokenizer(), paras, seq_len=16, n_seq=3) == paras[:6]
    with pytest.raises(common.PeerError, match="lower --eval_batches"):
        ttt_hf_flax.held_out_prefix(_CountingTokenizer(), paras, seq_len=16, n_seq=6)


def test_the_pytorch_fine_tuning_peer_without_torch_is_one_line_naming_the_extra():
    # torch hidden from the interpreter: its import fails as on a machine without it.
    script = REPO / "tests" / "tools" / "hf_finetune_sst2.py"
    hide = (
        "import runpy, sys; sys.modules['torch'] = None; sys.argv = ['x']; "
        f"runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hf_finetune_sst2.py: torch not installed: pip install 'bert-jax[test]' "
        "(the reference libraries: torch==2.13.0, transformers<5)"
    ]
