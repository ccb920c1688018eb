"""audioar.data.discovery: layouts, official lists, manifests, splits and their guarantees."""

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from audioar.data.discovery import (
    Clip,
    Dataset,
    Split,
    clips_with_label,
    discover,
    loso_folds,
    split,
)
from audioar.errors import ConfigError, DataError

FSDD = Path("/work/shared/data/fsdd/recordings")


def write_wav(path: Path, n: int = 80, sr: int = 8000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(n, np.float32), sr, subtype="PCM_16")
    return path


def make_fsdd(root: Path, labels=("0", "1"), speakers=("ann", "bob"), takes=7) -> Path:
    for lab in labels:
        for spk in speakers:
            for t in range(takes):
                write_wav(root / f"{lab}_{spk}_{t}.wav")
    return root


def fake_dataset(pairs, root="/nowhere") -> Dataset:
    """A Dataset of (speaker, label) pairs; split() needs no files."""
    clips = [
        Clip(Path(root, f"{i:04d}.wav"), label=f"l{lab}", speaker=f"s{spk}")
        for i, (spk, lab) in enumerate(pairs)
    ]
    return Dataset(Path(root), "manifest", clips)


def check_partition(parts: Split, clips: list[Clip]) -> None:
    every = parts.train + parts.validation + parts.test
    assert len(every) == len(set(every)) == len(clips)  # disjoint
    assert set(every) == set(clips)  # and covering


# --------------------------------------------------------------------------- layouts


def test_speech_commands_folders(tmp_path):
    write_wav(tmp_path / "yes" / "aaa_nohash_0.wav")
    write_wav(tmp_path / "yes" / "aaa_nohash_1.wav")
    write_wav(tmp_path / "yes" / "bbb_nohash_0.wav")
    write_wav(tmp_path / "no" / "extra" / "ccc_nohash_2.flac")  # recursive within the class
    write_wav(tmp_path / "no" / "plain.wav")  # no _nohash_: no speaker
    write_wav(tmp_path / "_background_noise_" / "white_noise.wav")
    (tmp_path / "no" / "notes.txt").write_text("not audio")
    (tmp_path / "README.md").write_text("readme")
    (tmp_path / "validation_list.txt").write_text("yes/bbb_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("yes/aaa_nohash_1.wav\nno/extra/ccc_nohash_2.flac\n")

    ds = discover(tmp_path)
    assert ds.layout == "folders" and len(ds) == 5
    assert ds.labels == ["no", "yes"]
    assert ds.speakers == ["aaa", "bbb", "ccc"]
    by_name = {c.path.name: c for c in ds.clips}
    assert "white_noise.wav" not in by_name
    assert by_name["aaa_nohash_1.wav"].take == 1
    assert by_name["plain.wav"].speaker is None and by_name["plain.wav"].split == "train"
    assert by_name["ccc_nohash_2.flac"].label == "no"
    assert {n: c.split for n, c in by_name.items()} == {
        "aaa_nohash_0.wav": "train",
        "aaa_nohash_1.wav": "test",
        "bbb_nohash_0.wav": "validation",
        "ccc_nohash_2.flac": "test",
        "plain.wav": "train",
    }
    parts = split(ds)  # the lists are honoured, nothing carved
    assert [c.path.name for c in parts.validation] == ["bbb_nohash_0.wav"]
    assert sorted(c.path.name for c in parts.test) == ["aaa_nohash_1.wav", "ccc_nohash_2.flac"]
    assert sorted(c.path.name for c in parts.train) == ["aaa_nohash_0.wav", "plain.wav"]
    assert len(ds.by_label("yes")) == 3 == len(clips_with_label(ds.clips, "yes"))


def test_folders_without_lists_have_no_official_split(tmp_path):
    for i in range(3):
        write_wav(tmp_path / "dog" / f"d{i}.wav")
        write_wav(tmp_path / "cat" / f"c{i}.wav")
    ds = discover(tmp_path)
    assert ds.layout == "folders" and all(c.split is None for c in ds.clips)
    with pytest.raises(DataError, match="random"):
        split(ds, "official")
    check_partition(split(ds, "random"), ds.clips)


def test_fsdd_layout_and_official_split(tmp_path):
    ds = discover(make_fsdd(tmp_path))
    assert ds.layout == "fsdd" and len(ds) == 28
    assert ds.labels == ["0", "1"] and ds.speakers == ["ann", "bob"]
    parts = split(ds, "official", seed=3)
    assert {c.take for c in parts.test} == {0, 1, 2, 3, 4}
    assert len(parts.test) == 20
    assert all(c.take >= 5 for c in parts.train + parts.validation)
    assert len(parts.validation) >= 1 and {c.label for c in parts.train} == {"0", "1"}
    check_partition(parts, ds.clips)
    assert parts.describe().startswith("official: train ")


def test_fsdd_odd_names_rejected(tmp_path):
    make_fsdd(tmp_path, takes=1)
    write_wav(tmp_path / "weird.wav")
    with pytest.raises(DataError, match="weird.wav"):
        discover(tmp_path)


def test_manifest_relative_paths_and_split(tmp_path):
    write_wav(tmp_path / "audio" / "a.wav")
    write_wav(tmp_path / "audio" / "b.wav")
    write_wav(tmp_path / "audio" / "c.wav")
    (tmp_path / "m.csv").write_text(
        "path,label,speaker,split\n"
        "audio/a.wav,up,sam,train\n"
        "audio/b.wav,down,kim,Test\n"
        "audio/c.wav,up,,dev\n"
    )
    ds = discover(tmp_path / "m.csv")
    assert ds.layout == "manifest" and len(ds) == 3
    by_name = {c.path.name: c for c in ds.clips}
    assert by_name["a.wav"].path == tmp_path / "audio" / "a.wav"
    assert by_name["b.wav"].split == "test" and by_name["c.wav"].split == "validation"
    assert by_name["c.wav"].speaker is None
    parts = split(ds)
    assert [c.path.name for c in parts.test] == ["b.wav"]
    assert [c.path.name for c in parts.validation] == ["c.wav"]
    # A folder holding manifest.csv is read as that manifest.
    (tmp_path / "manifest.csv").write_text("path,label\naudio/a.wav,up\n")
    assert discover(tmp_path).layout == "manifest"


def test_manifest_without_split_column(tmp_path):
    write_wav(tmp_path / "a.wav")
    (tmp_path / "m.csv").write_text("label,path\nup,a.wav\n")
    ds = discover(tmp_path / "m.csv")
    assert ds.clips[0].split is None and ds.clips[0].label == "up"
    with pytest.raises(DataError, match="no official test split"):
        split(ds)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("path,speaker\na.wav,x\n", "lacks column.*label"),
        ("", "lacks column.*path, label"),
        ("path,label\n", "no rows"),
        ("path,label\na.wav,\n", "line 2 has an empty path or label"),
        ("path,label,split\na.wav,up,holdout\n", "unknown split 'holdout'"),
        ("path,label\na.wav,up\ngone1.wav,up\ngone2.wav,up\n", "2 listed files.*gone1.wav, gone2"),
    ],
)
def test_manifest_errors(tmp_path, text, match):
    write_wav(tmp_path / "a.wav")
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DataError, match=match) as info:
        discover(tmp_path / "m.csv")
    assert str(tmp_path / "m.csv") in str(info.value) and "\n" not in str(info.value)


def test_discover_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        discover(tmp_path / "absent")
    with pytest.raises(DataError, match="no audio files"):
        discover(tmp_path)
    (tmp_path / "empty_class").mkdir()
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(DataError, match="no audio files"):
        discover(tmp_path)
    with pytest.raises(DataError, match="CSV manifest"):
        discover(tmp_path / "x.txt")


# --------------------------------------------------------------------------- schemes


def test_speaker_scheme_and_unknown_speaker(tmp_path):
    ds = discover(make_fsdd(tmp_path, speakers=("ann", "bob", "cid", "dan")))
    parts = split(ds, "speaker:bob")
    assert parts.name == "speaker:bob"
    assert {c.speaker for c in parts.test} == {"bob"} and len(parts.test) == 14
    assert len({c.speaker for c in parts.validation}) == 1
    check_partition(parts, ds.clips)
    with pytest.raises(DataError, match="known speakers: ann, bob, cid, dan"):
        split(ds, "speaker:zoe")


def test_speaker_scheme_single_training_speaker_falls_back(tmp_path, caplog):
    ds = discover(make_fsdd(tmp_path, speakers=("ann", "bob")))
    with caplog.at_level(logging.WARNING, logger="audioar.data.discovery"):
        parts = split(ds, "speaker:ann")
    assert "one training speaker" in caplog.text
    assert {c.speaker for c in parts.train + parts.validation} == {"bob"}
    assert {c.label for c in parts.train} == {"0", "1"} and parts.validation
    check_partition(parts, ds.clips)


def test_random_scheme_is_stratified_and_seeded():
    pairs = [(i % 5, i % 4) for i in range(200)]
    ds = fake_dataset(pairs)
    a = split(ds, "random", test_fraction=0.25, validation_fraction=0.2, seed=7)
    check_partition(a, ds.clips)
    for lab in ds.labels:
        assert len(clips_with_label(a.test, lab)) == 13  # round(0.25 * 50)
    assert {c.label for c in a.train} == set(ds.labels)
    b = split(ds, "random", test_fraction=0.25, validation_fraction=0.2, seed=7)
    assert (a.train, a.validation, a.test) == (b.train, b.validation, b.test)
    c = split(ds, "random", test_fraction=0.25, validation_fraction=0.2, seed=8)
    assert c.test != a.test
    # A label with one clip stays in train.
    rare = fake_dataset([*pairs, (0, 9)])
    assert any(c.label == "l9" for c in split(rare, "random", test_fraction=0.5).train)


def test_zero_validation_fraction():
    ds = fake_dataset([(i % 3, i % 2) for i in range(30)])
    assert split(ds, "speaker:s0", validation_fraction=0.0).validation == []
    assert split(ds, "random", validation_fraction=0.0).validation == []


def test_bad_options():
    ds = fake_dataset([(0, 0), (1, 1)])
    with pytest.raises(DataError, match="unknown split scheme"):
        split(ds, "kfold")
    with pytest.raises(DataError, match="loso_folds"):
        split(ds, "loso")
    with pytest.raises(ConfigError, match="validation_fraction"):
        split(ds, "random", validation_fraction=1.0)
    with pytest.raises(ConfigError, match="test_fraction"):
        split(ds, "random", test_fraction=-0.1)
    nobody = Dataset(Path("/x"), "folders", [Clip(Path("/x/a.wav"), "a")])
    with pytest.raises(DataError, match="no speaker"):
        loso_folds(nobody)
    with pytest.raises(DataError, match="no speaker"):
        split(nobody, "speaker:anyone")


@settings(deadline=None, max_examples=40)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3)), min_size=2, max_size=60).filter(
        lambda p: len({s for s, _ in p}) >= 2
    ),
    fraction=st.sampled_from([0.1, 0.15, 0.3, 0.6]),
    seed=st.integers(0, 3),
)
def test_speaker_splits_never_leak(pairs, fraction, seed):
    ds = fake_dataset(pairs)
    folds = loso_folds(ds, validation_fraction=fraction, seed=seed)
    assert [f.name for f in folds] == [f"speaker:{s}" for s in ds.speakers]
    for fold, speaker in zip(folds, ds.speakers, strict=True):
        check_partition(fold, ds.clips)
        assert {c.speaker for c in fold.test} == {speaker}
        assert len(fold.test) == sum(c.speaker == speaker for c in ds.clips)
        train_s = {c.speaker for c in fold.train}
        val_s = {c.speaker for c in fold.validation}
        assert train_s, "training part must not be empty"
        if len(train_s | val_s) >= 2:  # speaker-disjoint carve possible
            assert val_s and not (train_s & val_s)
        assert speaker not in train_s | val_s
        again = split(ds, fold.name, validation_fraction=fraction, seed=seed)
        assert (again.train, again.validation) == (fold.train, fold.validation)


def test_loso_covers_every_speaker_once(tmp_path):
    ds = discover(make_fsdd(tmp_path, speakers=("ann", "bob", "cid"), takes=6))
    folds = loso_folds(ds)
    tested = [c.path for f in folds for c in f.test]
    assert len(tested) == len(set(tested)) == len(ds)
    assert [f.name for f in folds] == ["speaker:ann", "speaker:bob", "speaker:cid"]


# --------------------------------------------------------------------------- real data


def test_real_fsdd_official_split():
    if not FSDD.is_dir():
        pytest.skip(f"FSDD not present at {FSDD}")
    ds = discover(FSDD)
    assert ds.layout == "fsdd" and len(ds) == 3000
    assert len(ds.labels) == 10 and len(ds.speakers) == 6
    parts = split(ds)
    assert len(parts.test) == 300
    check_partition(parts, ds.clips)
    for fold in loso_folds(ds):
        assert len({c.speaker for c in fold.validation} & {c.speaker for c in fold.train}) == 0
