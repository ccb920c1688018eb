"""extract() and the on-disk feature cache: order, hits, invalidation, atomicity, errors."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audioar.errors import AudioError, ConfigError, FeatureError
from audioar.features import STFT, FeatureCache, MuLaw, WholeWindowFFT, extract
from audioar.features.cache import file_key
from audioar.features.extract import default_cache_dir, iter_extract
from audioar.paths import cache_root

SR = 8000
FSDD = Path("/work/shared/data/fsdd/recordings")


def write_tone(path: Path, freq: float, seconds: float, subtype: str = "PCM_16") -> Path:
    t = np.arange(int(seconds * SR)) / SR
    sf.write(path, (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR, subtype=subtype)
    return path


@pytest.fixture
def clips(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "clips"
    folder.mkdir()
    specs = [(300, 0.3), (500, 1.2), (800, 0.05), (1200, 0.7), (2000, 0.45), (3000, 1.0)]
    return [write_tone(folder / f"c{i}.wav", f, s) for i, (f, s) in enumerate(specs)]


def reference(featurizer, paths) -> list[torch.Tensor]:
    """Plain path: read each file with soundfile, featurize it alone (Welch: unpadded)."""
    out = []
    for path in paths:
        y = torch.from_numpy(sf.read(path, dtype="float32")[0])
        if featurizer.name == "fft" and featurizer.config.mode == "welch":
            plain = WholeWindowFFT(sample_rate=SR, n_fft=featurizer.config.n_fft, seconds=None)
            out.append(plain(y[: featurizer.num_samples]))
        else:
            out.append(featurizer(y))
    return out


def cache_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "featurizer",
    [WholeWindowFFT(), WholeWindowFFT(mode="blog"), STFT(n_mels=16), MuLaw(), MuLaw(seconds=0.5)],
    ids=lambda f: f.name + str(f.num_samples),
)
def test_cold_then_warm_matches_reference(tmp_path, clips, featurizer):
    root = tmp_path / "cache"
    order = [clips[i] for i in (3, 0, 5, 1, 4, 2)]
    cold = extract(featurizer, order, cache_dir=root, batch_size=4)
    assert cold.cache_hits == 0 and cold.computed == len(order) and cold.errors == {}
    assert cold.paths == order
    warm = extract(featurizer, order, cache_dir=root, batch_size=4)
    assert warm.cache_hits == len(order) and warm.computed == 0
    expected = reference(featurizer, order)
    for result in (cold, warm):
        got = list(result.features)
        if featurizer.fixed_size:
            assert isinstance(result.features, torch.Tensor)
            assert result.features.shape == (len(order), *featurizer.feature_shape)
        for a, b in zip(got, expected, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            if a.is_floating_point():
                assert torch.allclose(a, b, atol=1e-4)
            else:
                assert torch.equal(a, b)


def test_clips_are_resampled_to_the_featurizer_rate(tmp_path):
    clip = write_tone(tmp_path / "tone.wav", 1000.0, 0.5)  # 8 kHz file
    fft = WholeWindowFFT(sample_rate=16000, n_fft=512)
    result = extract(fft, [clip], use_cache=False)
    assert int(result.features[0].argmax()) == 32  # 1000 Hz * 512 / 16000 Hz


def test_decode_threads_and_batches_give_the_same_features(tmp_path, clips):
    fft = WholeWindowFFT()
    a = extract(fft, clips, use_cache=False, num_workers=0, batch_size=256)
    b = extract(fft, clips, use_cache=False, num_workers=3, batch_size=2)
    assert torch.equal(a.features, b.features)


def test_iter_extract_gives_extract_a_batch_at_a_time(tmp_path, clips):
    """Batches in order with their own errors and counts, the same features as extract; the
    cache gets a shard once the new features pass cache_write_bytes, and the rest when the
    caller stops early."""
    fft = WholeWindowFFT()
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    paths = [*clips[:3], broken, *clips[3:]]
    whole = extract(fft, paths, use_cache=False, on_error="skip")
    root = tmp_path / "cache"
    extract(fft, clips[:2], cache_dir=root)  # two hits below
    parts = list(
        iter_extract(
            fft,
            paths,
            cache_dir=root,
            batch_size=3,
            on_error="skip",
            num_workers=1,
            cache_write_bytes=1,  # a shard after every batch that computed something
        )
    )
    assert [len(p.paths) + len(p.errors) for p in parts] == [3, 3, 1]
    assert [p.cache_hits for p in parts] == [2, 0, 0]
    assert [p.computed for p in parts] == [1, 2, 1]
    assert list(parts[1].errors) == [broken] and not parts[0].errors and not parts[2].errors
    assert [p.positions for p in parts] == [[0, 1, 2], [1, 2], [0]]
    assert whole.positions == [0, 1, 2, 4, 5, 6]
    assert torch.equal(torch.cat([p.features for p in parts]), whole.features)
    assert len(FeatureCache(root, fft.to_config()).shards()) == 1 + 3
    fresh = tmp_path / "fresh"
    batches = iter_extract(fft, clips, cache_dir=fresh, batch_size=2, num_workers=1)
    next(batches)
    batches.close()  # stopped early: what was computed is kept
    again = extract(fft, clips, cache_dir=fresh)
    assert (again.cache_hits, again.computed) == (2, len(clips) - 2)


def test_changed_file_is_recomputed(tmp_path, clips):
    root = tmp_path / "cache"
    fft = WholeWindowFFT()
    before = extract(fft, clips, cache_dir=root).features
    stat = clips[0].stat()
    write_tone(clips[0], 1500, 0.3)  # same length, so the same size: only the mtime tells
    assert clips[0].stat().st_size == stat.st_size
    os.utime(clips[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    after = extract(fft, clips, cache_dir=root)
    assert after.cache_hits == len(clips) - 1 and after.computed == 1
    assert torch.allclose(after.features[0], reference(fft, clips[:1])[0], atol=1e-4)
    assert not torch.allclose(after.features[0], before[0])
    assert torch.equal(after.features[1:], before[1:])


def test_changed_config_never_returns_other_features(tmp_path, clips):
    root = tmp_path / "cache"
    welch = extract(WholeWindowFFT(), clips, cache_dir=root)
    blog = extract(WholeWindowFFT(mode="blog"), clips, cache_dir=root)
    assert blog.cache_hits == 0
    assert not torch.allclose(welch.features, blog.features)
    small = extract(WholeWindowFFT(n_fft=256), clips, cache_dir=root)
    assert small.cache_hits == 0 and small.features.shape == (len(clips), 129)
    again = extract(WholeWindowFFT(), clips, cache_dir=root)
    assert again.cache_hits == len(clips) and torch.equal(again.features, welch.features)
    assert len([p for p in root.iterdir() if p.is_dir()]) == 3


def test_no_cache_neither_reads_nor_writes(tmp_path, clips):
    root = tmp_path / "cache"
    result = extract(WholeWindowFFT(), clips, cache_dir=root, use_cache=False)
    assert result.cache_hits == 0 and result.computed == len(clips)
    assert not root.exists()
    extract(WholeWindowFFT(), clips, cache_dir=root)
    again = extract(WholeWindowFFT(), clips, cache_dir=root, use_cache=False)
    assert again.cache_hits == 0 and again.computed == len(clips)


def test_default_cache_dir_is_under_cache_root(clips):
    assert default_cache_dir() == cache_root() / "features"
    extract(WholeWindowFFT(), clips[:2])
    assert any(default_cache_dir().glob("fft-*/shard-*.npz"))


def test_cache_files_are_whole_and_no_temp_files_remain(tmp_path, clips, monkeypatch):
    root = tmp_path / "cache"
    for featurizer in (WholeWindowFFT(), STFT(), MuLaw()):
        extract(featurizer, clips, cache_dir=root)
    names = [p.name for p in cache_files(root)]
    assert all(n == "config.json" or (n.startswith("shard-") and n.endswith(".npz")) for n in names)
    # A write that fails half-way leaves neither a shard nor a temporary file behind.
    before = cache_files(root)

    def broken_savez(file, **arrays):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        extract(WholeWindowFFT(n_fft=256), clips, cache_dir=root)
    assert [p for p in cache_files(root) if p.name != "config.json"] == [
        p for p in before if p.name != "config.json"
    ]


def test_bad_clips_are_skipped_or_raised(tmp_path, clips):
    nan_clip = tmp_path / "nan.wav"
    sf.write(nan_clip, np.array([0.1, np.nan, 0.2] * 100, np.float32), SR, subtype="FLOAT")
    huge_clip = tmp_path / "huge.wav"  # finite samples whose power overflows float32
    sf.write(huge_clip, np.full(2000, 1e37, np.float32), SR, subtype="FLOAT")
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    missing = tmp_path / "missing.wav"
    paths = [clips[0], nan_clip, clips[1], huge_clip, text, missing, clips[2]]
    root = tmp_path / "cache"
    result = extract(STFT(), paths, cache_dir=root, on_error="skip", batch_size=3)
    assert result.paths == [clips[0], clips[1], clips[2]]
    assert len(result.features) == 3
    assert set(result.errors) == {nan_clip, huge_clip, text, missing}
    assert "NaN" in result.errors[nan_clip] and "not finite" in result.errors[huge_clip]
    assert all(str(p) in msg for p, msg in result.errors.items())
    for got, want in zip(result.features, reference(STFT(), result.paths), strict=True):
        assert torch.allclose(got, want, atol=1e-4)
    # Errors are not cached: the good clips are hits, the bad ones fail again.
    again = extract(STFT(), paths, cache_dir=root, on_error="skip")
    assert again.cache_hits == 3 and set(again.errors) == set(result.errors)
    with pytest.raises(AudioError, match="nan.wav"):
        extract(STFT(), [clips[0], nan_clip], cache_dir=root)
    with pytest.raises(FeatureError, match="huge.wav"):
        extract(STFT(), [huge_clip], cache_dir=root)
    with pytest.raises(ConfigError):
        extract(STFT(), clips, on_error="ignore")


def test_all_skipped_gives_an_empty_stack(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("x")
    result = extract(WholeWindowFFT(), [bad], use_cache=False, on_error="skip")
    assert result.features.shape == (0, 257) and list(result.errors) == [bad]
    empty = extract(MuLaw(seconds=0.1), [], use_cache=False)
    assert empty.features.shape == (0, 800) and empty.features.dtype == torch.int64


def test_shards_are_merged_keeping_the_newest_entry(tmp_path, clips):
    cache = FeatureCache(tmp_path / "cache", WholeWindowFFT().to_config(), max_shards=3)
    key, resolved = file_key(clips[0])
    for step in range(5):
        cache.put([key, f"{step:040d}"], [resolved, resolved], [np.full(257, step, np.float32)] * 2)
    assert len(cache.shards()) <= 3
    found = cache.get([key, f"{4:040d}", f"{0:040d}"])
    assert float(found[f"{4:040d}"][0]) == 4.0
    assert f"{0:040d}" not in found  # an older entry for the same path was dropped
    cache.compact()
    assert len(cache.shards()) == 1
    cache.clear()
    assert cache.get([key]) == {}


def test_damaged_shard_is_ignored(tmp_path, clips):
    root = tmp_path / "cache"
    fft = WholeWindowFFT()
    first = extract(fft, clips, cache_dir=root)
    shard = FeatureCache(root, fft.to_config()).shards()[0]
    shard.write_bytes(shard.read_bytes()[:100])  # truncated
    again = extract(fft, clips, cache_dir=root)
    assert again.cache_hits == 0 and torch.equal(again.features, first.features)
    assert extract(fft, clips, cache_dir=root).cache_hits == len(clips)


def test_symlink_and_relative_paths_share_one_identity(tmp_path, clips, monkeypatch):
    link = tmp_path / "link.wav"
    link.symlink_to(clips[1])
    monkeypatch.chdir(clips[1].parent)
    assert file_key(link) == file_key(clips[1]) == file_key(clips[1].name)
    assert file_key(tmp_path / "missing.wav") is None


@pytest.mark.skipif(not FSDD.is_dir(), reason="FSDD recordings not present")
def test_fsdd_clips_featurize(tmp_path):
    paths = sorted(FSDD.glob("*.wav"))[:60]
    result = extract(WholeWindowFFT(), paths, cache_dir=tmp_path)
    assert result.features.shape == (60, 257) and torch.isfinite(result.features).all()
    assert result.errors == {}


def test_a_batch_of_long_clips_is_featurized_in_parts(tmp_path, clips, monkeypatch):
    """DECODE_SAMPLES bounds the decoded audio held at once; the features are the same."""
    extract_module = sys.modules["audioar.features.extract"]  # `.extract` is the function
    fft = WholeWindowFFT()
    whole = extract(fft, clips, use_cache=False)
    calls = []
    original = extract_module.featurize_waveforms
    monkeypatch.setattr(extract_module, "DECODE_SAMPLES", 5000)  # under a second at 8 kHz
    monkeypatch.setattr(
        extract_module,
        "featurize_waveforms",
        lambda f, ws, **kw: calls.append(sum(map(len, ws))) or original(f, ws, **kw),
    )
    parts = extract(fft, clips, use_cache=False)
    assert torch.equal(parts.features, whole.features)
    assert len(calls) > 1 and all(n < 5000 + 1.2 * SR for n in calls)


def test_background_decoding_reads_ahead_only_within_its_sample_budget(
    tmp_path, clips, monkeypatch
):
    """In order, as without a pool; short clips far ahead, long ones a job at a time."""
    from concurrent.futures import ThreadPoolExecutor

    extract_module = sys.modules["audioar.features.extract"]
    order = list(range(len(clips))) * 3
    plain = list(extract_module._decoded(clips, order, SR, None, 1 << 24))

    class Counting(ThreadPoolExecutor):
        submitted = 0

        def submit(self, *args, **kwargs):
            Counting.submitted += 1
            return super().submit(*args, **kwargs)

    monkeypatch.setattr(extract_module, "DECODE_JOB_FILES", 2)
    ahead = {}
    for budget in (1, 1 << 24):
        Counting.submitted = 0
        with Counting(1) as pool:
            got = []
            for n, item in enumerate(extract_module._decoded(clips, order, SR, pool, budget), 1):
                got.append(item)
                jobs_used = -(-n // extract_module.DECODE_JOB_FILES)
                ahead[budget] = max(ahead.get(budget, 0), Counting.submitted - jobs_used)
        assert all(np.array_equal(a, b) for a, b in zip(got, plain, strict=True))
    assert ahead[1] <= 1 < ahead[1 << 24]  # long clips: one job ahead; short: several
