"""When things happen within an activity: one timeline shared by every modality.

The camera, the microphone and the IMU of one segment read the same timeline, so a door
that slams in the audio at 1.65 s also shuts in the camera then, and the wearable's impact
spike of a fall lands when the figure hits the floor. All times are seconds since the
segment began; every function is pure (a function of time and the nuisance).
"""

from __future__ import annotations

import numpy as np

from streambind.world.nuisance import Nuisance, event_times, hash01

WALK_STEP_HZ = 1.8
RUN_STEP_HZ = 2.8
FALL_PERIOD_S = 3.2
FALL_START_S = 0.8
FALL_IMPACT_S = 1.25
FALL_RISE_S = 0.5
DOOR_PERIOD_S = 2.2
DOOR_OPEN_S = (0.2, 1.0)
DOOR_SLAM_S = (1.5, 1.65)
GLASS_PERIOD_S = 1.7
BARK_GROUP_S = 1.6
BARK_GAP_S = 0.28
BARK_LEN_S = 0.16
SYLLABLE_HZ = 4.5
BEAT_S = 0.5
KEY_PERIOD_S = 0.12
CRACKLE_PERIOD_S = 0.08
BREATH_S = 4.0


def step_period(n: Nuisance, running: bool) -> float:
    """Seconds between footsteps."""
    return 1.0 / ((RUN_STEP_HZ if running else WALK_STEP_HZ) * n.tempo)


def gait_phase(n: Nuisance, t_s: float | np.ndarray, running: bool) -> np.ndarray:
    """Gait phase in radians: one half cycle (pi) per footstep."""
    return np.pi * (np.asarray(t_s) - n.phase_s) / step_period(n, running)


def cycle(n: Nuisance, t_s: float | np.ndarray, period_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(cycle index, seconds into the cycle) of a periodic activity scaled by the tempo."""
    p = period_s / n.tempo
    u = (np.asarray(t_s, dtype=np.float64) - n.phase_s) / p
    k = np.floor(u)
    return k.astype(np.int64), (u - k) * p


def fall_tilt(n: Nuisance, t_s: float | np.ndarray) -> np.ndarray:
    """The body's tilt from upright in radians over a fall cycle (0 standing, ~pi/2 lying)."""
    _, tau = cycle(n, t_s, FALL_PERIOD_S)
    p = FALL_PERIOD_S / n.tempo
    falling = np.clip((tau - FALL_START_S) / (FALL_IMPACT_S - FALL_START_S), 0, 1) ** 2
    rising = np.clip((tau - (p - FALL_RISE_S)) / FALL_RISE_S, 0, 1)
    return np.deg2rad(88.0) * falling * (1 - rising)


def door_angle(n: Nuisance, t_s: float | np.ndarray) -> np.ndarray:
    """The door's opening angle in radians (0 shut) over a slam cycle."""
    _, tau = cycle(n, t_s, DOOR_PERIOD_S)
    opening = np.clip((tau - DOOR_OPEN_S[0]) / (DOOR_OPEN_S[1] - DOOR_OPEN_S[0]), 0, 1)
    closing = np.clip((tau - DOOR_SLAM_S[0]) / (DOOR_SLAM_S[1] - DOOR_SLAM_S[0]), 0, 1) ** 2
    return np.deg2rad(75.0) * np.sin(opening * np.pi / 2) * (1 - closing)


def impacts(n: Nuisance, t0_s: float, t1_s: float, period_s: float, at_s: float,
            lookback_s: float = 0.0) -> np.ndarray:
    """Times in [t0 - lookback, t1) at which a periodic event at ``at_s`` into the cycle falls."""
    p = period_s / n.tempo
    _, t = event_times(t0_s, t1_s, p, phase_s=n.phase_s + at_s, jitter=0.0,
                       lookback_s=lookback_s)
    return t


def bark_times(n: Nuisance, t0_s: float, t1_s: float, lookback_s: float = 0.0
               ) -> tuple[np.ndarray, np.ndarray]:
    """(bark index, onset) of barks: groups of two or three barks."""
    groups, starts = event_times(t0_s, t1_s, BARK_GROUP_S / n.tempo, phase_s=n.phase_s,
                                 jitter=0.3, seed=n.seed, salt=3,
                                 lookback_s=lookback_s + 3 * BARK_GAP_S)
    ks, ts = [], []
    for g, start in zip(groups.tolist(), starts.tolist(), strict=True):
        count = 2 + int(hash_count(n.seed, g))
        for j in range(count):
            t = start + j * BARK_GAP_S
            if t0_s - lookback_s <= t < t1_s:
                ks.append(g * 4 + j)
                ts.append(t)
    return np.asarray(ks, dtype=np.int64), np.asarray(ts, dtype=np.float64)


def hash_count(seed: int, k: int) -> float:
    """0 or 1, hashed (two or three barks in a group)."""
    return float(hash01(seed, k, 5) < 0.5)


def bark_envelope(n: Nuisance, t_s: np.ndarray) -> np.ndarray:
    """1 while the dog barks (its head up, mouth open), else 0, at times ``t_s``."""
    t_s = np.asarray(t_s, dtype=np.float64)
    out = np.zeros(t_s.shape)
    if t_s.size == 0:
        return out
    _, onsets = bark_times(n, float(t_s.min()), float(t_s.max()) + 1e-9, BARK_LEN_S)
    for onset in onsets:
        out = np.maximum(out, ((t_s >= onset) & (t_s < onset + BARK_LEN_S)).astype(float))
    return out


def beat_index(n: Nuisance, t_s: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(beat index, seconds into the beat) of the music."""
    return cycle(n, t_s, BEAT_S)


def breath(n: Nuisance, t_s: float | np.ndarray) -> np.ndarray:
    """Breathing, a slow sine in [-1, 1]."""
    return np.sin(2 * np.pi * (np.asarray(t_s) - n.phase_s) * n.tempo / BREATH_S)
