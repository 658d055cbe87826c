"""What the microphone hears: each activity's sound for any time span of its segment.

Sounds are built from a few physical caricatures: footsteps and falls are damped low
sinusoids (thumps), a slam is a deep thump plus rattle, glass is a bright crash with
high partials ringing, barks are harmonic pulses with a falling pitch, speech is a glottal
harmonic series shaped by moving formants in syllables, music is triads on a beat with a
kick, typing is short resonant clicks, fire is a low rumble with random pops. Nuisance:
gain, pitch, room noise and mains hum, event phase and jitter. Events come from the shared
timeline (:mod:`streambind.world.rhythm`), so consecutive chunks continue each other.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from streambind.world import rhythm
from streambind.world.nuisance import Nuisance, event_times, hash01


def _add(out: np.ndarray, t0_s: float, rate: float, onset_s: float, dur_s: float,
         wave: Callable[[np.ndarray], np.ndarray]) -> None:
    """Add ``wave(tau)`` (tau: seconds since ``onset_s``) over [onset, onset + dur)."""
    i0 = max(int(np.ceil((onset_s - t0_s) * rate)), 0)
    i1 = min(int(np.ceil((onset_s + dur_s - t0_s) * rate)), out.size)
    if i0 < i1:
        tau = t0_s + np.arange(i0, i1) / rate - onset_s
        out[i0:i1] += wave(tau)


def _thump(freqs: np.ndarray, decay_s: float, amp: float) -> Callable[[np.ndarray], np.ndarray]:
    def wave(tau: np.ndarray) -> np.ndarray:
        env = np.exp(-tau / decay_s) * np.minimum(tau / 0.002, 1.0)
        return amp * env * np.sin(2 * np.pi * np.outer(tau, freqs)).mean(axis=1)
    return wave


def _burst(rng: np.random.Generator, decay_s: float, amp: float, ring_hz: float = 0.0
           ) -> Callable[[np.ndarray], np.ndarray]:
    """A decaying noise burst, high-passed; with ``ring_hz`` a resonance rings in it."""
    def wave(tau: np.ndarray) -> np.ndarray:
        noise = np.diff(rng.standard_normal(tau.size + 1)) * 0.5
        if ring_hz:
            noise = 0.5 * noise + np.sin(2 * np.pi * ring_hz * tau)
        return amp * np.exp(-tau / decay_s) * noise
    return wave


def _steps(out, t0, rate, n, rng, running: bool) -> None:
    period = rhythm.step_period(n, running)
    ks, ts = event_times(t0, t0 + out.size / rate, period, phase_s=n.phase_s, jitter=0.08,
                         seed=n.seed, salt=101, lookback_s=0.2)
    for k, onset in zip(ks.tolist(), ts.tolist(), strict=True):
        h = hash01(n.seed, np.arange(3) + 3 * k, 102)
        freqs = (70 + 160 * h) * n.pitch
        _add(out, t0, rate, onset, 0.2, _thump(freqs, 0.035, 0.9 if running else 0.5))
        _add(out, t0, rate, onset, 0.02, _burst(rng, 0.004, 0.25 if running else 0.12))
    if running:  # hard breathing
        t = t0 + np.arange(out.size) / rate
        env = (0.5 + 0.5 * np.sin(2 * np.pi * 1.4 * n.tempo * t)) ** 3
        out += 0.06 * env * np.diff(rng.standard_normal(out.size + 1))


def _fall(out, t0, rate, n, rng) -> None:
    t1 = t0 + out.size / rate
    t = t0 + np.arange(out.size) / rate
    moving = np.abs(np.gradient(rhythm.fall_tilt(n, t))) * rate > 0.3
    out += 0.05 * moving * rng.standard_normal(out.size)  # clothes rustle while falling
    for onset in rhythm.impacts(n, t0, t1, rhythm.FALL_PERIOD_S, rhythm.FALL_IMPACT_S, 0.6):
        freqs = np.array([48.0, 75.0, 110.0, 160.0]) * n.pitch
        _add(out, t0, rate, onset, 0.6, _thump(freqs, 0.12, 1.0))
        _add(out, t0, rate, onset, 0.05, _burst(rng, 0.01, 0.3))
        _add(out, t0, rate, onset + 0.18, 0.3, _thump(freqs * 1.3, 0.05, 0.3))


def _door(out, t0, rate, n, rng) -> None:
    t1 = t0 + out.size / rate
    t = t0 + np.arange(out.size) / rate
    swinging = np.abs(np.gradient(rhythm.door_angle(n, t))) * rate
    creak_hz = (320 + 180 * np.sin(2 * np.pi * 0.9 * t)) * n.pitch
    out += 0.04 * np.clip(swinging, 0, 1.5) * np.sign(np.sin(2 * np.pi * creak_hz * t))
    for onset in rhythm.impacts(n, t0, t1, rhythm.DOOR_PERIOD_S, rhythm.DOOR_SLAM_S[1], 0.8):
        _add(out, t0, rate, onset, 0.8, _thump(np.array([55.0, 78.0, 96.0]) * n.pitch, 0.16, 1.0))
        _add(out, t0, rate, onset, 0.3, _thump(np.array([260.0, 340.0, 410.0]) * n.pitch,
                                               0.05, 0.35))
        _add(out, t0, rate, onset, 0.03, _burst(rng, 0.006, 0.5))


def _glass(out, t0, rate, n, rng) -> None:
    t1 = t0 + out.size / rate
    top = 0.45 * rate
    for onset in rhythm.impacts(n, t0, t1, rhythm.GLASS_PERIOD_S, 0.15, 1.2):
        _add(out, t0, rate, onset, 0.25, _burst(rng, 0.05, 0.7))
        k = int(np.floor(onset * 10))
        h = hash01(n.seed, np.arange(16) + 16 * k, 111)
        freqs = np.minimum(2500 + 4500 * h, top) * n.pitch ** 0.5
        _add(out, t0, rate, onset, 0.8, _thump(freqs, 0.12, 0.9))
        for j in range(4):  # shards landing and tinkling
            hj = hash01(n.seed, np.arange(3) + 3 * (k * 8 + j), 112)
            f = np.minimum(3000 + 4000 * hj, top)
            _add(out, t0, rate, onset + 0.2 + 0.8 * hj[0], 0.2, _thump(f, 0.03, 0.4))


def _barks(out, t0, rate, n, rng) -> None:
    t1 = t0 + out.size / rate
    ks, onsets = rhythm.bark_times(n, t0, t1, rhythm.BARK_LEN_S)
    f0 = (430 + 220 * float(hash01(n.seed, 0, 121))) * n.pitch
    harmonics = np.arange(1, 9)
    harmonics = harmonics[harmonics * f0 < 0.45 * rate]

    def bark(tau: np.ndarray) -> np.ndarray:
        u = tau / rhythm.BARK_LEN_S
        phase = 2 * np.pi * f0 * (tau - 0.08 * tau * u)  # pitch falls by ~15 % per bark
        env = np.minimum(tau / 0.01, 1.0) * (1 - u) ** 1.5
        tone = (np.sin(np.outer(phase, harmonics)) / harmonics).sum(axis=1)
        return 0.45 * env * (tone + 0.2 * rng.standard_normal(tau.size))

    for onset in onsets.tolist():
        _add(out, t0, rate, onset, rhythm.BARK_LEN_S, bark)


def _speech(out, t0, rate, n, rng) -> None:
    t = t0 + np.arange(out.size) / rate
    turn = np.floor((t - n.phase_s) / 2.3).astype(np.int64) % 2  # two speakers take turns
    base = np.where(turn == 0, 105 + 40 * float(hash01(n.seed, 0, 131)),
                    185 + 50 * float(hash01(n.seed, 1, 131))) * n.pitch
    omega = 2 * np.pi * 0.7
    cycles = base * (t - 0.08 * np.cos(omega * t) / omega)  # f0 wobbles by ±8 %
    syl = np.floor((t - n.phase_s) * rhythm.SYLLABLE_HZ * n.tempo).astype(np.int64)
    u = (t - n.phase_s) * rhythm.SYLLABLE_HZ * n.tempo - syl
    voiced = hash01(n.seed, syl, 132) > 0.2
    f1 = 300 + 500 * hash01(n.seed, syl, 133)
    f2 = 900 + 1400 * hash01(n.seed, syl, 134)
    env = np.sin(np.pi * u) ** 0.7 * voiced
    h_max = int(min(4000, 0.45 * rate) / float(base.min()))
    harmonics = np.arange(1, max(h_max, 2) + 1)
    freqs = np.outer(base, harmonics)  # (N, H)
    weight = (np.exp(-(((freqs - f1[:, None]) / 150) ** 2))
              + 0.7 * np.exp(-(((freqs - f2[:, None]) / 200) ** 2))
              + 0.3 * np.exp(-(((freqs - 2600) / 300) ** 2)))
    weight *= freqs < 0.45 * rate
    tone = (weight * np.sin(2 * np.pi * np.outer(cycles, harmonics))).sum(axis=1)
    out += 0.25 * env * tone + 0.01 * env * rng.standard_normal(out.size)


_CHORDS = ((0, 4, 7), (5, 9, 12), (7, 11, 14), (9, 12, 16), (2, 5, 9))


def _music(out, t0, rate, n, rng) -> None:
    t = t0 + np.arange(out.size) / rate
    beat, tau = rhythm.beat_index(n, t)
    root = (196 + 70 * float(hash01(n.seed, 0, 141))) * n.pitch
    order = np.argsort(hash01(n.seed, np.arange(len(_CHORDS)), 142))
    chord = order[(beat // 2) % len(_CHORDS)]
    env = 0.6 + 0.4 * np.exp(-4 * tau)
    for voice in range(3):
        semis = np.array([c[voice] for c in _CHORDS])[chord]
        f = root * 2 ** (semis / 12)
        for h, a in ((1, 1.0), (2, 0.5), (3, 0.25)):
            out += 0.1 * a * env * np.sin(2 * np.pi * h * f * t) * (h * f < 0.45 * rate)
    kick = np.exp(-tau / 0.07) * np.sin(2 * np.pi * 58 * n.pitch * tau)
    out += 0.4 * kick


def _typing(out, t0, rate, n, rng) -> None:
    t1 = t0 + out.size / rate
    ks, onsets = event_times(t0, t1, rhythm.KEY_PERIOD_S / n.tempo, phase_s=n.phase_s,
                             jitter=0.8, seed=n.seed, salt=151, keep=0.85, lookback_s=0.12)
    for k, onset in zip(ks.tolist(), onsets.tolist(), strict=True):
        h = hash01(n.seed, np.arange(2) + 2 * k, 152)
        ring = min(2000 + 2000 * float(h[0]), 0.4 * rate)
        _add(out, t0, rate, onset, 0.02, _burst(rng, 0.004, 0.35 + 0.2 * float(h[1]), ring))
        _add(out, t0, rate, onset + 0.07, 0.02, _burst(rng, 0.003, 0.15, ring * 1.2))


def _fire(out, t0, rate, n, rng) -> None:
    t = t0 + np.arange(out.size) / rate
    h = hash01(n.seed, np.arange(24), 161)
    freqs, phases = 30 + 170 * h[:12], 2 * np.pi * h[12:]
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * 0.3 * t + phases[0])
    out += 0.05 * swell * np.sin(2 * np.pi * np.outer(t, freqs) + phases).mean(axis=1)
    out += 0.012 * rng.standard_normal(out.size)
    ks, onsets = event_times(t0, t0 + out.size / rate, rhythm.CRACKLE_PERIOD_S,
                             phase_s=n.phase_s, jitter=1.0, seed=n.seed, salt=162, keep=0.5,
                             lookback_s=0.01)
    for k, onset in zip(ks.tolist(), onsets.tolist(), strict=True):
        amp = 0.2 + 0.7 * float(hash01(n.seed, k, 163)) ** 2
        _add(out, t0, rate, onset, 0.01, _burst(rng, 0.0015, amp))


def _breathing(out, t0, rate, n, rng) -> None:
    t = t0 + np.arange(out.size) / rate
    env = np.maximum(rhythm.breath(n, t), 0) ** 2
    out += 0.012 * env * np.diff(rng.standard_normal(out.size + 1))


_SOUNDS = {
    "walking": lambda *a: _steps(*a, running=False),
    "running": lambda *a: _steps(*a, running=True),
    "a person falling": _fall,
    "a door slamming": _door,
    "glass breaking": _glass,
    "a dog barking": _barks,
    "people talking": _speech,
    "music playing": _music,
    "typing on a keyboard": _typing,
    "a fire crackling": _fire,
    "sitting still": _breathing,
    "an empty room": lambda *a: None,
}


def render_audio(name: str, t0_s: float, num_samples: int, sample_rate: float, n: Nuisance,
                 rng: np.random.Generator) -> np.ndarray:
    """Mono float32 samples in [-1, 1] of activity ``name`` from ``t0_s`` into its segment."""
    from streambind.world.activities import activity

    act = activity(name).name
    out = np.zeros(num_samples, dtype=np.float64)
    _SOUNDS[act](out, float(t0_s), float(sample_rate), n, rng)
    t = t0_s + np.arange(num_samples) / sample_rate
    out = n.gain * out + n.hum_level * np.sin(2 * np.pi * n.hum_hz * t)
    out += n.room_noise * rng.standard_normal(num_samples)
    return np.clip(out, -1.0, 1.0).astype(np.float32)
