"""Data-set layouts: DCASE machine folders (2020, 2021-2024), AudioMNIST, forced layouts."""

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioar.data.clips import DCASE_LAYOUTS
from audioar.data.discovery import LAYOUTS, UNLABELED, Clip, Dataset, discover, split
from audioar.data.layouts import DcaseName, parse_dcase_name
from audioar.errors import DataError

rng = np.random.default_rng(0)


def write_wav(path: Path, n: int = 64, sr: int = 8000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.01 * rng.standard_normal(n).astype(np.float32), sr, subtype="PCM_16")
    return path


def make_dcase2020(
    machine: Path, ids=("00", "02"), train=10, test=3, eval_ids=(), n_eval=3
) -> Path:
    for i in ids:
        for n in range(train):
            write_wav(machine / "train" / f"normal_id_{i}_{n:08d}.wav")
        for n in range(test):
            write_wav(machine / "test" / f"normal_id_{i}_{n:08d}.wav")
            write_wav(machine / "test" / f"anomaly_id_{i}_{n:08d}.wav")
    for i in eval_ids:  # the evaluation set: no label in the name
        for n in range(n_eval):
            write_wav(machine / "test" / f"id_{i}_{n:08d}.wav")
    return machine


def make_dcase2021(machine: Path) -> Path:
    names = {
        "train": [
            "section_00_source_train_normal_0000_vel_6_loc_A.wav",
            "section_00_source_train_normal_0001_vel_8_loc_A.wav",
            "section_00_target_train_normal_0000_vel_6_loc_B.wav",
            "section_01_source_train_normal_0000_noAttribute.wav",
            "section_01_source_train_normal_0001_noAttribute.wav",
            "section_01_target_train_normal_0000_noAttribute.wav",
        ],
        "test": [
            "section_00_source_test_normal_0000_vel_6_loc_A.wav",
            "section_00_target_test_anomaly_0001_vel_6_loc_B.wav",
            "section_01_source_test_anomaly_0000.wav",  # 2021: no attributes
            "section_01_target_test_normal_0001.wav",
        ],
    }
    for part, files in names.items():
        for name in files:
            write_wav(machine / part / name)
    return machine


def make_audiomnist(root: Path, speakers=("01", "02", "03"), digits=3, takes=2) -> Path:
    for spk in speakers:
        for d in range(digits):
            for t in range(takes):
                write_wav(root / spk / f"{d}_{spk}_{t}.wav")
    (root / "audioMNIST_meta.txt").write_text("{}")
    return root


# --------------------------------------------------------------------------- DCASE 2020


def test_dcase2020_machine_folder(tmp_path):
    ds = discover(make_dcase2020(tmp_path / "fan"))
    assert ds.layout == "dcase2020" and ds.machine == "fan" and ds.normal == "normal"
    assert len(ds) == 2 * (10 + 6)
    assert ds.labels == ["anomaly", "normal"] and ds.groups == ["id_00", "id_02"]
    assert ds.domains == [] and ds.speakers == []
    by_name = {(c.split, c.path.name): c for c in ds.clips}
    clip = by_name["test", "anomaly_id_02_00000001.wav"]
    assert (clip.label, clip.group, clip.split, clip.take) == ("anomaly", "id_02", "test", 1)
    assert clip.speaker is None and clip.domain is None and clip.attributes is None
    assert {c.split for c in ds.clips if c.path.parent.name == "train"} == {"train"}
    assert all(c.label == "normal" for c in ds.clips if c.split == "train")
    assert discover(tmp_path / "fan", layout="dcase2020").clips == ds.clips


def test_dcase2020_evaluation_names_are_unlabeled(tmp_path):
    ds = discover(make_dcase2020(tmp_path / "ToyCar", ids=("05",), test=0, eval_ids=("05", "06")))
    assert ds.layout == "dcase2020" and ds.labels == ["normal"]  # UNLABELED left out
    unlabeled = [c for c in ds.clips if c.label == UNLABELED]
    assert len(unlabeled) == 6 and {c.group for c in unlabeled} == {"id_05", "id_06"}
    assert {c.split for c in unlabeled} == {"test"}
    parts = split(ds, "official")
    assert set(parts.test) == set(unlabeled)
    assert all(c.label == "normal" for c in parts.train + parts.validation)


def test_stratified_carve_keeps_every_group_in_validation(tmp_path):
    ds = discover(make_dcase2020(tmp_path / "pump", ids=("00", "02", "04", "06"), train=8))
    parts = split(ds, "official", validation_fraction=0.1, seed=1)
    assert {c.group for c in parts.validation} == {"id_00", "id_02", "id_04", "id_06"}
    assert {c.group for c in parts.train} == {"id_00", "id_02", "id_04", "id_06"}
    # one clip per ID by the fraction, topped up to the calibration minimum (5) per label
    assert len(parts.validation) == 5
    assert {c.split for c in parts.train + parts.validation} == {"train"}
    assert len(parts.test) == 4 * 6
    every = parts.train + parts.validation + parts.test
    assert len(every) == len(set(every)) == len(ds)


def test_random_and_speaker_schemes_leave_out_unlabeled(tmp_path, caplog):
    ds = discover(make_dcase2020(tmp_path / "fan", ids=("00",), eval_ids=("01",)))
    with caplog.at_level(logging.WARNING, logger="audioar.data.splits"):
        parts = split(ds, "random", test_fraction=0.3)
    assert "leaving out 3 unlabeled clips" in caplog.text
    every = parts.train + parts.validation + parts.test
    assert all(c.label != UNLABELED for c in every) and len(every) == len(ds) - 3
    # A speaker scheme leaves them out too.
    mixed = Dataset(
        Path("/x"),
        "manifest",
        [Clip(Path(f"/x/{i}.wav"), "a", f"s{i % 2}") for i in range(6)]
        + [Clip(Path("/x/u.wav"), UNLABELED, "s0")],
    )
    parts = split(mixed, "speaker:s0")
    assert all(c.label != UNLABELED for c in parts.train + parts.validation + parts.test)


# --------------------------------------------------------------------------- DCASE 2021+


def test_dcase2021_sections_domains_attributes(tmp_path):
    ds = discover(make_dcase2021(tmp_path / "slider"))
    assert ds.layout == "dcase2021" and ds.machine == "slider" and ds.normal == "normal"
    assert ds.groups == ["section_00", "section_01"] and ds.domains == ["source", "target"]
    assert ds.labels == ["anomaly", "normal"]
    by_name = {c.path.name: c for c in ds.clips}
    c = by_name["section_00_source_train_normal_0001_vel_8_loc_A.wav"]
    assert (c.group, c.domain, c.label, c.split, c.take) == (
        "section_00", "source", "normal", "train", 1,
    )  # fmt: skip
    assert c.attributes == "vel_8_loc_A"
    assert by_name["section_01_target_train_normal_0000_noAttribute.wav"].attributes == (
        "noAttribute"
    )
    plain = by_name["section_01_source_test_anomaly_0000.wav"]
    assert plain.attributes is None and plain.label == "anomaly" and plain.split == "test"
    parts = split(ds, "official", validation_fraction=0.4)
    assert {c.group for c in parts.validation} == {"section_00", "section_01"}


def test_dcase2021_evaluation_names(tmp_path):
    machine = tmp_path / "bearing"
    write_wav(machine / "train" / "section_03_source_train_normal_0000_vel_21.wav")
    write_wav(machine / "test" / "section_03_0000.wav")  # 2022-2024 evaluation set
    write_wav(machine / "test" / "section_04_target_test_0007.wav")  # 2021 evaluation set
    ds = discover(machine)
    assert ds.layout == "dcase2021" and ds.labels == ["normal"]
    by_name = {c.path.name: c for c in ds.clips}
    a, b = by_name["section_03_0000.wav"], by_name["section_04_target_test_0007.wav"]
    assert (a.label, a.group, a.domain, a.take, a.split) == (
        UNLABELED,
        "section_03",
        None,
        0,
        "test",
    )
    assert (b.label, b.group, b.domain, b.take) == (UNLABELED, "section_04", "target", 7)
    assert set(split(ds).test) == {a, b}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("normal_id_00_00000012.wav", ("dcase2020", "normal", "id_00", 12, None, None)),
        ("anomaly_id_4_3", ("dcase2020", "anomaly", "id_4", 3, None, None)),
        ("id_05_00000000.wav", ("dcase2020", UNLABELED, "id_05", 0, None, None)),
        (
            "section_00_target_test_anomaly_0031_m-n_W.wav",
            ("dcase2021", "anomaly", "section_00", 31, "target", "m-n_W"),
        ),
        (
            "section_02_source_test_0001.wav",
            ("dcase2021", UNLABELED, "section_02", 1, "source", None),
        ),
        ("section_00_0042.flac", ("dcase2021", UNLABELED, "section_00", 42, None, None)),
        ("0_01_0.wav", None),
        ("normal_00000012.wav", None),
        ("section_00_source_train_normal.wav", None),
    ],
)
def test_parse_dcase_name(name, expected):
    parsed = parse_dcase_name(name)
    assert parsed == (DcaseName(*expected) if expected else None)


def test_several_machine_types_refused_one_is_read(tmp_path):
    make_dcase2020(tmp_path / "dev_data" / "fan", train=2, test=1)
    make_dcase2020(tmp_path / "dev_data" / "pump", train=2, test=1)
    with pytest.raises(DataError, match="2 machine types \\(fan, pump\\); pass one") as info:
        discover(tmp_path / "dev_data")
    assert "one model per machine type" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(DataError, match="machine types"):
        discover(tmp_path / "dev_data", layout="dcase2020")
    make_dcase2021(tmp_path / "eval_data" / "valve")
    ds = discover(tmp_path / "eval_data")  # a folder of one machine folder is that machine
    assert ds.layout == "dcase2021" and ds.machine == "valve"


def test_dcase_part_folder_passed_directly(tmp_path):
    make_dcase2020(tmp_path / "fan", train=2, test=1)
    with pytest.raises(DataError, match=f"pass the machine folder {tmp_path / 'fan'}"):
        discover(tmp_path / "fan" / "train")


def test_dcase_odd_files_named(tmp_path):
    machine = make_dcase2020(tmp_path / "valve", train=4, test=1)
    write_wav(machine / "test" / "weird.wav")
    with pytest.raises(DataError, match="1 files do not match the dcase2020 names.*test/weird"):
        discover(machine)


# --------------------------------------------------------------------------- AudioMNIST


def test_audiomnist_per_speaker_folders(tmp_path):
    ds = discover(make_audiomnist(tmp_path / "data"))
    assert ds.layout == "audiomnist" and len(ds) == 18 and ds.machine is None
    assert ds.labels == ["0", "1", "2"] and ds.speakers == ["01", "02", "03"]
    assert all(c.split is None for c in ds.clips) and ds.normal is None
    clip = next(c for c in ds.clips if c.path.name == "2_03_1.wav")
    assert (clip.label, clip.speaker, clip.take, clip.group) == ("2", "03", 1, None)
    with pytest.raises(DataError, match="no official test split.*random.*speaker:NAME"):
        split(ds, "official")
    parts = split(ds, "speaker:02")
    assert {c.speaker for c in parts.test} == {"02"} and len(parts.test) == 6


def test_speech_commands_folders_stay_folders(tmp_path):
    # Speech Commands names also fit {label}_{speaker}_{take}: the folder is the label.
    for label in ("yes", "no"):
        for spk in ("0a7c2a8d", "bbb"):
            write_wav(tmp_path / label / f"{spk}_nohash_0.wav")
    ds = discover(tmp_path)
    assert ds.layout == "folders" and ds.labels == ["no", "yes"]
    assert ds.speakers == ["0a7c2a8d", "bbb"]


def test_fsdd_names_in_class_folders_stay_folders(tmp_path):
    for label in ("0", "1"):
        write_wav(tmp_path / label / f"{label}_george_0.wav")
        write_wav(tmp_path / label / f"{label}_jackson_1.wav")
    ds = discover(tmp_path)
    assert ds.layout == "folders" and ds.labels == ["0", "1"]


# --------------------------------------------------------------------------- forced layouts


def test_layout_override(tmp_path):
    root = make_audiomnist(tmp_path / "data", speakers=("01", "02"), digits=2, takes=1)
    forced = discover(root, layout="folders")
    assert forced.layout == "folders" and forced.labels == ["01", "02"]
    assert discover(root, layout="audiomnist").labels == ["0", "1"]
    with pytest.raises(DataError, match="fsdd layout is one flat folder"):
        discover(root, layout="fsdd")
    with pytest.raises(DataError, match="dcase2021 layout is one machine folder"):
        discover(root, layout="dcase2021")
    with pytest.raises(DataError, match="manifest.csv"):
        discover(root, layout="manifest")
    write_wav(root / "01" / "notes.wav")
    with pytest.raises(DataError, match="1 files do not match the audiomnist names.*01/notes"):
        discover(root, layout="audiomnist")
    assert discover(root).layout == "folders"  # no longer every name fits: a folder per class


def test_layout_mismatch_and_unknown(tmp_path):
    machine = make_dcase2021(tmp_path / "gearbox")
    with pytest.raises(DataError) as info:
        discover(machine, layout="dcase2020")
    message = str(info.value)
    assert message.startswith(f"{machine}: 10 files do not match the dcase2020 names ")
    assert "({normal,anomaly}_id_<ID>_<n>.wav): train/section_00_source_train" in message
    assert message.endswith(", ...") and "\n" not in message
    flat = tmp_path / "flat"
    write_wav(flat / "0_ann_0.wav")
    write_wav(flat / "a.wav")
    with pytest.raises(DataError, match=r"1 files do not match the fsdd names \(.*\): a.wav$"):
        discover(flat, layout="fsdd")
    with pytest.raises(DataError, match="unknown data set layout 'dcase'.*folders, fsdd"):
        discover(flat, layout="dcase")
    assert LAYOUTS == ("folders", "fsdd", "audiomnist", "manifest", "dcase2020", "dcase2021")
    assert set(DCASE_LAYOUTS) <= set(LAYOUTS)


# --------------------------------------------------------------------------- summaries


def test_summary_and_describe(tmp_path):
    ds = discover(make_dcase2020(tmp_path / "fan", train=3, test=2, eval_ids=("04",), n_eval=2))
    table = ds.summary()
    assert list(table.columns) == ["part", "label", "group", "domain", "clips"]
    assert table["clips"].sum() == len(ds)
    rows = {tuple(r[:4]): r[4] for r in table.itertuples(index=False)}
    assert rows["train", "normal", "id_00", None] == 3
    assert rows["test", "anomaly", "id_02", None] == 2
    assert rows["test", "(unlabeled)", "id_04", None] == 2
    assert list(table["part"]) == sorted(table["part"], key=["train", "test"].index)
    line = ds.describe()
    assert "\n" not in line and line.startswith("dcase2020 fan: ")
    for bit in ("labels anomaly, normal (+2 unlabeled)", "3 groups (id_00, id_02, id_04)",
                "parts train 6, test 10"):  # fmt: skip
        assert bit in line

    d21 = discover(make_dcase2021(tmp_path / "slider"))
    table = d21.summary()
    assert set(table["domain"]) == {"source", "target"}
    assert "domains source, target" in d21.describe()

    speech = discover(make_audiomnist(tmp_path / "data", speakers=("01", "02"), digits=2))
    table = speech.summary()
    assert table["part"].isna().all() and table["group"].isna().all()
    assert list(table["label"]) == ["0", "1"] and list(table["clips"]) == [4, 4]
    line = speech.describe()
    assert line.startswith("audiomnist: ") and "no official split" in line
    assert "2 speakers" in line and "groups" not in line
    assert Dataset(Path("/x"), "manifest").summary().empty
