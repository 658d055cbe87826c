"""What the camera sees: each activity's scene as shapes at a moment of its timeline.

:func:`layout` returns the shapes (colour, distance, temperature) of an activity at time
``t_s`` with a segment's nuisance; :mod:`streambind.world.raster` turns them into camera,
depth and thermal frames. People are articulated figures projected from metres (so a
fall tips the whole body onto the floor), and every room has the same kinds of furniture
at nuisance positions, so that "an empty room" is not simply a plain frame.
"""

from __future__ import annotations

import numpy as np

from streambind.world import rhythm
from streambind.world.nuisance import Nuisance, hash01
from streambind.world.raster import ASPECT, CAMERA_HEIGHT_M, Shape, eye_row

Colour = tuple[float, float, float]


def _bounce(x: float) -> float:
    """Fold a coordinate into [0.12, 0.88] (a subject turning at the walls)."""
    span = 0.76
    u = (x - 0.12) % (2 * span)
    return 0.12 + (u if u < span else 2 * span - u)


class _Projector:
    """Body coordinates (metres, feet at origin, y up) to scene shapes at distance ``d``."""

    def __init__(self, n: Nuisance, x: float, d: float, tilt: float = 0.0, facing: float = 1.0):
        self.n, self.x, self.d, self.tilt, self.facing = n, x, d, tilt, facing
        self.eye = eye_row(n)

    def point(self, bx: float, by: float) -> tuple[float, float]:
        c, s = np.cos(self.tilt), np.sin(self.tilt)
        rx = bx * c + self.facing * by * s
        ry = -self.facing * bx * s + by * c
        return self.x * ASPECT + rx / self.d, self.eye + (CAMERA_HEIGHT_M - ry) / self.d

    def limb(self, p: tuple[float, float], q: tuple[float, float], thick_m: float,
             colour: Colour, temp_c: float, rect: bool = False) -> Shape:
        (x0, y0), (x1, y1) = self.point(*p), self.point(*q)
        length = float(np.hypot(x1 - x0, y1 - y0))
        return Shape((x0 + x1) / 2 / ASPECT, (y0 + y1) / 2, max(length / 2, 1e-3),
                     thick_m / 2 / self.d, colour, self.d, temp_c,
                     angle=float(np.arctan2(y1 - y0, x1 - x0)), rect=rect)

    def blob(self, centre: tuple[float, float], r_m: float, colour: Colour, temp_c: float,
             ry_m: float | None = None) -> Shape:
        x, y = self.point(*centre)
        return Shape(x / ASPECT, y, r_m / self.d, (ry_m or r_m) / self.d, colour, self.d, temp_c,
                     angle=-self.facing * self.tilt)


def person(n: Nuisance, x: float, d: float, *, gait: float = 0.0, stride: float = 0.0,
           tilt: float = 0.0, facing: float = 1.0, seated: bool = False, lean: float = 0.0,
           clothes: Colour | None = None, arm_lift: float = 0.0) -> list[Shape]:
    """An articulated figure: legs, torso, arms and head."""
    pr = _Projector(n, x, d, tilt + lean, facing)
    k = n.subject_size
    cl = clothes or n.clothes
    trousers = (cl[2] * 0.5, cl[0] * 0.4, cl[1] * 0.5)
    body, skin_c = n.body_c - 3.0, n.body_c
    out: list[Shape] = []
    hip = 0.5 * k if seated else 0.9 * k
    if seated:
        for side in (-0.08, 0.08):
            out.append(pr.limb((side, hip), (side + 0.42 * k * facing, hip), 0.14 * k,
                               trousers, body))
            out.append(pr.limb((side + 0.42 * k * facing, hip), (side + 0.42 * k * facing, 0.0),
                               0.11 * k, trousers, body))
    else:
        swing = stride * np.sin(gait)
        for sign in (-1.0, 1.0):
            a = sign * swing
            foot = (0.0 + np.sin(a) * hip, hip - np.cos(a) * hip)
            out.append(pr.limb((0.0, hip), foot, 0.13 * k, trousers, body))
    shoulder = hip + 0.55 * k
    out.append(pr.limb((0.0, hip), (0.0, shoulder), 0.36 * k, cl, body))
    for sign in (-1.0, 1.0):
        a = -sign * stride * np.sin(gait) * 0.8 + arm_lift * (1 if sign > 0 else 0)
        hand = (0.0 + np.sin(a) * 0.6 * k, shoulder - np.cos(a) * 0.6 * k)
        out.append(pr.limb((0.0, shoulder - 0.04), hand, 0.09 * k, cl, body))
    out.append(pr.blob((0.0, shoulder + 0.16 * k), 0.11 * k, n.skin, skin_c, 0.13 * k))
    return out


def _furniture(n: Nuisance) -> list[Shape]:
    """A picture or shelf on the wall and sometimes a plant: present in every scene."""
    out: list[Shape] = []
    h = [float(v) for v in hash01(n.seed, np.arange(8), 21)]
    wall_d = n.wall_m - 0.02
    col = (h[2] * 0.8, h[3] * 0.8, h[4] * 0.8)
    y = eye_row(n) + (CAMERA_HEIGHT_M - 1.5) / n.wall_m
    out.append(Shape(0.1 + 0.8 * h[0], y, (0.25 + 0.3 * h[1]) / n.wall_m, 0.2 / n.wall_m,
                     col, wall_d, n.ambient_c, rect=True))
    if h[5] < 0.5:
        pr = _Projector(n, 0.05 + 0.9 * h[6], n.wall_m - 0.4)
        out.append(pr.limb((0, 0), (0, 0.35), 0.25, (0.45, 0.3, 0.2), n.ambient_c, rect=True))
        out.append(pr.blob((0, 0.6), 0.22, (0.15, 0.45 + 0.3 * h[7], 0.15), n.ambient_c - 0.5))
    return out


def _subject_depth(n: Nuisance, lo: float = 1.8) -> float:
    return lo + (n.wall_m - lo - 0.6) * float(hash01(n.seed, 1, 31))


def _walking(n: Nuisance, t: float, running: bool) -> list[Shape]:
    speed = (0.32 if running else 0.11) * n.tempo
    x = _bounce(n.subject_x + n.subject_dir * speed * t)
    u = (n.subject_x + n.subject_dir * speed * t - 0.12) % 1.52
    facing = n.subject_dir * (1.0 if u < 0.76 else -1.0)
    gait = float(rhythm.gait_phase(n, t, running))
    return person(n, x, _subject_depth(n), gait=gait, stride=0.75 if running else 0.4,
                  facing=facing, lean=0.2 if running else 0.0)


def _falling(n: Nuisance, t: float) -> list[Shape]:
    tilt = float(rhythm.fall_tilt(n, t))
    return person(n, n.subject_x, _subject_depth(n), tilt=tilt, facing=n.subject_dir,
                  arm_lift=1.2 * tilt)


def _door(n: Nuisance, t: float) -> list[Shape]:
    d = n.wall_m - 0.05
    pr = _Projector(n, n.subject_x, d)
    frame = pr.limb((0, 0), (0, 2.1), 1.0, (0.08, 0.07, 0.06), n.ambient_c - 4.0, rect=True)
    angle = float(rhythm.door_angle(n, t))
    width = 0.9 * np.cos(angle)
    wood = (0.45 + 0.2 * n.clothes[0], 0.28 + 0.1 * n.clothes[1], 0.12)
    x_hinge = -0.45
    panel = pr.limb((x_hinge + width / 2, 0), (x_hinge + width / 2, 2.05), max(width, 0.02),
                    wood, n.ambient_c - 1.5, rect=True)
    panel = Shape(panel.cx, panel.cy, panel.rx, panel.ry, panel.colour, d - 0.4 * np.sin(angle),
                  panel.temp_c, panel.angle, True)
    knob = pr.blob((x_hinge + width * 0.88, 1.0), 0.04, (0.85, 0.75, 0.3), n.ambient_c - 1.0)
    knob = Shape(knob.cx, knob.cy, knob.rx, knob.ry, knob.colour, panel.depth_m - 0.05,
                 knob.temp_c)
    return [frame, panel, knob]


def _glass(n: Nuisance, t: float) -> list[Shape]:
    d = 1.4 + 1.2 * float(hash01(n.seed, 4, 31))
    pr = _Projector(n, n.subject_x, d)
    wood = (0.35 + 0.3 * n.floor[0], 0.25, 0.15)
    out = [pr.limb((-0.5, 0.72), (0.5, 0.72), 0.06, wood, n.ambient_c, rect=True),
           pr.limb((-0.45, 0.0), (-0.45, 0.7), 0.05, wood, n.ambient_c, rect=True),
           pr.limb((0.45, 0.0), (0.45, 0.7), 0.05, wood, n.ambient_c, rect=True)]
    k, tau = rhythm.cycle(n, t, rhythm.GLASS_PERIOD_S)
    k, tau = int(k), float(tau)
    shine = (0.8, 0.95, 1.0)
    if tau < 0.15:  # a whole glass, about to fall
        whole = pr.blob((0.1, 0.85 - 2 * tau), 0.05, shine, n.ambient_c, 0.09)
        out.append(Shape(whole.cx, whole.cy, whole.rx, whole.ry, shine, d - 0.1, n.ambient_c,
                         alpha=0.8))
    for j in range(22):  # shards fly out from the impact point, then lie on the floor
        h = hash01(n.seed, np.arange(4) + 4 * (j + 40 * k), 41)
        vx, vy = (h[0] - 0.5) * 2.4, 0.5 + 1.5 * h[1]
        s = min(max(tau - 0.15, 0.0), 0.6)
        bx, by = 0.1 + vx * s, max(0.02, 0.5 + vy * s - 4.9 * s * s)
        x, y = pr.point(bx, by)
        out.append(Shape(x / ASPECT, y, (0.03 + 0.04 * h[2]) / d, (0.015 + 0.025 * h[3]) / d,
                         shine, d - 0.2 - 0.3 * h[2], n.ambient_c, angle=float(6 * h[3])))
    return out


def _dog(n: Nuisance, t: float) -> list[Shape]:
    d = _subject_depth(n, 1.5)
    x = n.subject_x + 0.03 * np.sin(0.7 * t)
    pr = _Projector(n, x, d, facing=n.subject_dir)
    f = n.subject_dir
    fur = tuple(0.25 + 0.5 * c * v for c, v in zip(n.clothes, (0.9, 0.6, 0.3), strict=True))
    temp = n.body_c + 2.0
    bark = float(rhythm.bark_envelope(n, np.array([t]))[0])
    out = [pr.blob((0.0, 0.38), 0.36 * n.subject_size, fur, temp, 0.15 * n.subject_size)]
    for lx in (-0.25, -0.15, 0.18, 0.27):
        out.append(pr.limb((f * lx, 0.32), (f * lx, 0.0), 0.06, fur, temp - 1))
    out.append(pr.limb((-f * 0.33, 0.45), (-f * 0.5, 0.62), 0.05, fur, temp - 2))
    head = (f * 0.42, 0.55 + 0.08 * bark)
    out.append(pr.blob(head, 0.12, fur, temp + 0.5))
    out.append(pr.blob((head[0] + f * 0.12, head[1] - 0.03), 0.07, fur, temp, 0.05 + 0.03 * bark))
    if bark:
        out.append(pr.blob((head[0] + f * 0.16, head[1] - 0.06), 0.04, (0.55, 0.1, 0.1), temp + 1))
    return out


def _talking(n: Nuisance, t: float) -> list[Shape]:
    d = _subject_depth(n)
    other = (n.clothes[2], n.clothes[0], n.clothes[1])
    gesture = 0.3 + 0.3 * np.sin(2.1 * t + n.phase_s)
    return (person(n, n.subject_x - 0.1, d, facing=1.0, arm_lift=gesture)
            + person(n, n.subject_x + 0.1, d + 0.1, facing=-1.0, clothes=other,
                     arm_lift=0.3 + 0.3 * np.sin(1.7 * t)))


def _music(n: Nuisance, t: float) -> list[Shape]:
    d = _subject_depth(n, 1.6)
    pr = _Projector(n, n.subject_x, d)
    beat, tau = rhythm.beat_index(n, t)
    pulse = float(np.exp(-6 * tau))
    out = [pr.limb((0, 0), (0, 0.9), 0.5, (0.06, 0.06, 0.07), n.ambient_c + 6, rect=True),
           pr.blob((0, 0.62), 0.15 + 0.02 * pulse, (0.25, 0.25, 0.28), n.ambient_c + 7),
           pr.blob((0, 0.25), 0.1 + 0.015 * pulse, (0.25, 0.25, 0.28), n.ambient_c + 7)]
    for j in range(6):  # an equalizer display beside the speaker
        level = 0.15 + 0.6 * float(hash01(n.seed, int(beat) * 8 + j, 51)) * (0.5 + 0.5 * pulse)
        colour = (0.2 + 0.8 * level, 1.0 - 0.6 * level, 0.2)
        out.append(pr.limb((0.45 + 0.09 * j, 0.3), (0.45 + 0.09 * j, 0.3 + level), 0.06,
                           colour, n.ambient_c + 3, rect=True))
    return out


def _typing(n: Nuisance, t: float) -> list[Shape]:
    d = 1.3 + 0.5 * float(hash01(n.seed, 2, 31))
    out = person(n, n.subject_x, d + 0.5, seated=True)
    pr = _Projector(n, n.subject_x, d)
    desk = (0.45 + 0.3 * n.floor[0], 0.35 + 0.2 * n.floor[1], 0.25)
    out += [pr.limb((-0.6, 0.74), (0.6, 0.74), 0.05, desk, n.ambient_c, rect=True),
            pr.limb((-0.25, 0.78), (-0.25, 1.15), 0.5, (0.05, 0.05, 0.05), n.ambient_c + 8,
                    rect=True),
            pr.limb((-0.25, 0.82), (-0.25, 1.11), 0.45, (0.35, 0.55, 0.9), n.ambient_c + 10,
                    rect=True),
            pr.limb((0.05, 0.77), (0.55, 0.77), 0.06, (0.12, 0.12, 0.14), n.ambient_c + 1,
                    rect=True)]
    press = int(np.floor((t - n.phase_s) / rhythm.KEY_PERIOD_S * n.tempo))
    for j in range(12):
        lit = hash01(n.seed, press * 16 + j, 61) < 0.15
        out.append(pr.blob((0.08 + 0.04 * j, 0.785), 0.014, (0.95, 0.95, 0.9) if lit else
                           (0.6, 0.6, 0.62), n.ambient_c + 1))
    for j, hx in enumerate((0.18, 0.42)):
        hop = 0.02 * float(hash01(n.seed, press * 4 + j, 62))
        hand = pr.blob((hx, 0.81 + hop), 0.06, n.skin, n.body_c, 0.03)
        out.append(Shape(hand.cx, hand.cy, hand.rx, hand.ry, hand.colour, d - 0.05, hand.temp_c))
    return out


def _fire(n: Nuisance, t: float) -> list[Shape]:
    d = 1.8 + 1.2 * float(hash01(n.seed, 3, 31))
    pr = _Projector(n, n.subject_x, d)
    brick = (0.45 + 0.2 * n.wall[0], 0.2, 0.15)
    out = [pr.limb((0, 0), (0, 1.1), 1.4, brick, n.ambient_c + 10, rect=True),
           pr.limb((0, 0.05), (0, 0.75), 0.9, (0.03, 0.02, 0.02), n.ambient_c + 30, rect=True),
           pr.limb((-0.3, 0.08), (0.3, 0.12), 0.1, (0.3, 0.15, 0.05), 250.0)]
    for j in range(7):
        h = hash01(n.seed, np.arange(3) + 3 * j, 71)
        flicker = 0.5 + 0.5 * np.sin(2 * np.pi * (1.5 + 2.5 * h[0]) * t + 6 * h[1])
        height = 0.2 + 0.35 * flicker * (0.6 + 0.4 * h[2])
        x = -0.3 + 0.1 * j
        colour = (1.0, 0.45 + 0.45 * h[2] * flicker, 0.05 + 0.2 * (1 - flicker))
        out.append(pr.blob((x, 0.12 + height / 2), 0.06 + 0.03 * h[1], colour,
                           350.0 + 250 * flicker, height / 2))
    return out


def _sitting(n: Nuisance, t: float) -> list[Shape]:
    d = _subject_depth(n)
    pr = _Projector(n, n.subject_x, d + 0.15)
    chair = (0.3 + 0.4 * n.floor[2], 0.2 + 0.3 * n.floor[1], 0.15)
    sway = 0.01 * float(rhythm.breath(n, t))
    out = [pr.limb((0.0, 0.45), (0.42 * n.subject_dir, 0.45), 0.06, chair, n.ambient_c,
                   rect=True),
           pr.limb((-0.05 * n.subject_dir, 0.0), (-0.05 * n.subject_dir, 1.0), 0.05, chair,
                   n.ambient_c, rect=True)]
    return out + person(n, n.subject_x, d, seated=True, facing=n.subject_dir, tilt=sway)


def layout(name: str, t_s: float, n: Nuisance) -> tuple[list[Shape], float]:
    """The shapes of activity ``name`` at ``t_s`` seconds into its segment, and the light.

    The light factor scales the camera's exposure (a fire's flicker lights the room).
    """
    from streambind.world.activities import activity

    name = activity(name).name
    light = 1.0
    if name in ("walking", "running"):
        shapes = _walking(n, t_s, name == "running")
    elif name == "a person falling":
        shapes = _falling(n, t_s)
    elif name == "a door slamming":
        shapes = _door(n, t_s)
    elif name == "glass breaking":
        shapes = _glass(n, t_s)
    elif name == "a dog barking":
        shapes = _dog(n, t_s)
    elif name == "people talking":
        shapes = _talking(n, t_s)
    elif name == "music playing":
        shapes = _music(n, t_s)
    elif name == "typing on a keyboard":
        shapes = _typing(n, t_s)
    elif name == "a fire crackling":
        shapes = _fire(n, t_s)
        light = 0.75 + 0.1 * float(np.sin(9 * t_s) * np.sin(5.3 * t_s + 1))
    elif name == "sitting still":
        shapes = _sitting(n, t_s)
    else:  # an empty room
        shapes = []
    return _furniture(n) + shapes, light
