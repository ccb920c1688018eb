"""Signal processing of the synthesiser: formant resonators, all-pole filters, biquads.

The formant cascade runs time-varying second-order resonators whose coefficients are held
for one control frame; ``allpole_blocks`` is its vectorised all-pole filter (zero-state
responses per frame plus a prefix scan over the frame hand-overs) and
``allpole_blocks_reference`` the plain per-sample loop it is tested against. The RBJ
band-pass and peaking biquads shape frication noise and the channel's EQ.

References:
    Klatt, "Software for a cascade/parallel formant synthesizer", JASA 67(3), 1980.
    Hillis & Steele, "Data parallel algorithms", CACM 29(12), 1986 (the prefix scan).
    Bristow-Johnson, "Cookbook formulae for audio EQ biquad filter coefficients" (RBJ).
"""

from __future__ import annotations

import numpy as np

__all__ = ["formant_cascade", "allpole_blocks", "allpole_blocks_reference"]


def _signal():  # noqa: ANN202
    """scipy.signal, imported on first use (it costs a second at CLI start-up)."""
    from scipy import signal

    return signal


def _resonators(
    freqs: np.ndarray, bandwidths: np.ndarray, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """Second-order resonators (Klatt 1980), one per formant and control frame.

    Args:
        freqs: Formant frequencies (Hz), shape (frames, formants).
        bandwidths: Their bandwidths (Hz), shape (frames, formants).
        sample_rate: Sample rate (Hz).

    Returns:
        ``(gain, a)``: gains (frames, formants) making each DC gain 1, and denominators
        a (frames, formants, 3) with ``a[..., 0] == 1``.
    """
    r = np.exp(-np.pi * bandwidths / sample_rate)
    a1 = -2.0 * r * np.cos(2.0 * np.pi * freqs / sample_rate)
    a2 = r * r
    return 1.0 + a1 + a2, np.stack([np.ones_like(a1), a1, a2], axis=-1)


def formant_cascade(
    x: np.ndarray,
    freqs: np.ndarray,
    bandwidths: np.ndarray,
    sample_rate: int,
    block: int,
    *,
    reference: bool = False,
) -> np.ndarray:
    """Filter ``x`` through time-varying formant resonators in cascade.

    Args:
        x: Excitation, shape (time,), ``time == frames * block``.
        freqs: Formant frequencies (Hz) per control frame, shape (frames, formants).
        bandwidths: Bandwidths (Hz), shape (frames, formants).
        sample_rate: Sample rate (Hz).
        block: Samples per control frame (coefficients are held within a frame), > 2.
        reference: Use the plain per-sample loop instead of the vectorised path.

    Returns:
        Output, shape (time,).
    """
    gain, a = _resonators(freqs, bandwidths, sample_rate)
    gain, a = np.moveaxis(gain, 1, 0), np.moveaxis(a, 1, 0)  # formants first
    y = x
    if reference:
        for k in range(a.shape[0]):
            y = allpole_blocks_reference(y, gain[k], a[k], block)
        return y
    from_past = _from_past(a, block)  # input-independent: all formants at once
    for k in range(a.shape[0]):
        y = _allpole_apply(y, gain[k], a[k], from_past[k])
    return y


def _recurse(drive: np.ndarray, a: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Run ``y[n] = drive[n] - sum_k a[k] y[n - k]`` over a frame, many frames at once.

    Args:
        drive: Input per step, shape (block, *batch).
        a: Denominators, shape (order + 1, *batch) (``a[0]`` unused, taken as 1).
        start: Past outputs, oldest first, shape (order, *batch).

    Returns:
        Outputs, shape (block, *batch).
    """
    order = a.shape[0] - 1
    hist = np.concatenate([start, drive])  # time axis first: contiguous steps
    for n in range(drive.shape[0]):
        for k in range(order):  # order is small (2 for a resonator): plain products
            hist[order + n] -= a[order - k] * hist[n + k]
    return hist[order:]


def _from_past(a: np.ndarray, block: int) -> np.ndarray:
    """Responses of block-constant all-pole filters to their past outputs.

    Args:
        a: Denominators, shape (..., frames, order + 1), ``a[..., 0] == 1``.
        block: Samples per frame, > order.

    Returns:
        Response to no input with past output ``y[-1 - j] = 1`` (the others 0) in column
        j, shape (..., frames, block, order).
    """
    order = a.shape[-1] - 1
    coef = np.moveaxis(a, -1, 0)[:, None]  # (order + 1, 1, ..., frames)
    lead = a.shape[:-1]
    start = np.zeros((order, order, *lead))
    start[np.arange(order - 1, -1, -1), np.arange(order)] = 1.0  # column j: y[-1 - j] = 1
    out = _recurse(np.zeros((block, order, *lead)), coef, start)  # (block, order, ...)
    return np.ascontiguousarray(np.moveaxis(out, (0, 1), (-2, -1)))


def _affine_scan(m: np.ndarray, c: np.ndarray) -> np.ndarray:
    """States of ``p[f + 1] = c[f] + m[f] @ p[f]``, ``p[0] = 0``, for f < frames.

    A log-depth prefix composition (Hillis & Steele) instead of a loop over frames.

    Args:
        m: Transition matrices, shape (frames, order, order).
        c: Offsets, shape (frames, order).

    Returns:
        ``p[0], ..., p[frames - 1]``, shape (frames, order).
    """
    m, c = m.copy(), c.copy()
    step = 1
    while step < len(c):
        # Compose each map with the one `step` frames earlier (that one acts first).
        c_new = c.copy()
        c_new[step:] += np.einsum("fij,fj->fi", m[step:], c[:-step])
        m_new = m.copy()
        m_new[step:] = m[step:] @ m[:-step]
        m, c = m_new, c_new
        step *= 2
    return np.concatenate([np.zeros((1, c.shape[1])), c[:-1]])


def _allpole_apply(
    x: np.ndarray, gain: np.ndarray, a: np.ndarray, from_past: np.ndarray
) -> np.ndarray:
    """Run a block-constant all-pole filter given its responses to past outputs."""
    frames, block, order = from_past.shape
    # Each frame from rest, all frames at once; then add what the past outputs contribute.
    drive = (x.reshape(frames, block) * gain[:, None]).T
    zero_state = _recurse(drive, a.T, np.zeros((order, frames))).T  # (frames, block)
    # Hand each frame's last `order` outputs (newest first) to the next frame.
    newest = slice(block - 1, block - order - 1 if block > order else None, -1)
    pasts = _affine_scan(from_past[:, newest, :], zero_state[:, newest])
    return (zero_state + np.einsum("fbk,fk->fb", from_past, pasts)).reshape(-1)


def allpole_blocks(x: np.ndarray, gain: np.ndarray, a: np.ndarray, block: int) -> np.ndarray:
    """Time-varying all-pole filter, coefficients held for ``block`` samples (fast path).

    Computes ``y[n] = gain[f] * x[n] - sum_k a[f, k] * y[n - k]`` with ``f = n // block``.
    Within a frame the filter is linear time-invariant, so each frame's output is its
    zero-state response (a convolution) plus a matrix times the previous frame's last
    ``order`` outputs; those hand-overs form an affine recurrence solved by a prefix scan.
    Everything is vectorised over frames; ``allpole_blocks_reference`` is the plain loop.

    Args:
        x: Input, shape (time,), ``time == frames * block``.
        gain: Per-frame gain, shape (frames,).
        a: Per-frame denominators, shape (frames, order + 1), ``a[:, 0] == 1``;
            ``order < block``.
        block: Samples per frame.

    Returns:
        Output, shape (time,).
    """
    return _allpole_apply(x, gain, a, _from_past(a, block))


def allpole_blocks_reference(
    x: np.ndarray, gain: np.ndarray, a: np.ndarray, block: int
) -> np.ndarray:
    """Plain per-sample loop computing the same filter as ``allpole_blocks`` (slow)."""
    order = a.shape[1] - 1
    y = np.zeros(x.size + order)  # y[n + order] holds output n; the first `order` are zeros
    for n in range(x.size):
        f = n // block
        acc = gain[f] * x[n]
        for k in range(1, order + 1):
            acc -= a[f, k] * y[n + order - k]
        y[n + order] = acc
    return y[order:]


def _bandpass(centre: float, bandwidth: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ band-pass biquad with 0 dB peak gain."""
    centre = min(centre, 0.45 * sample_rate)
    w0 = 2 * np.pi * centre / sample_rate
    q = max(centre / bandwidth, 0.3)
    alpha = np.sin(w0) / (2 * q)
    b = np.array([alpha, 0.0, -alpha])
    a = np.array([1 + alpha, -2 * np.cos(w0), 1 - alpha])
    return b / a[0], a / a[0]


def _peaking(
    freq: float, gain_db: float, q: float, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """RBJ peaking EQ biquad."""
    amp = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / sample_rate
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * amp, -2 * np.cos(w0), 1 - alpha * amp])
    a = np.array([1 + alpha / amp, -2 * np.cos(w0), 1 - alpha / amp])
    return b / a[0], a / a[0]


def _smooth(track: np.ndarray, width: int) -> np.ndarray:
    """Hann-window moving average along axis 0 with edge padding (``width`` frames)."""
    if width <= 1:
        return track
    window = np.hanning(width + 2)[1:-1]
    window /= window.sum()
    pad = width // 2
    padded = np.pad(track, [(pad, width - 1 - pad)] + [(0, 0)] * (track.ndim - 1), mode="edge")
    if track.ndim == 1:
        return np.convolve(padded, window, mode="valid")
    return np.stack(
        [np.convolve(padded[:, i], window, mode="valid") for i in range(track.shape[1])], axis=1
    )
