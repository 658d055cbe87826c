"""The world's activities: names, zero-shot text prompts and caption templates.

An activity is what a device's surroundings are doing for a while. Every activity is
rendered coherently into every sensor modality (see :mod:`streambind.world.scene`,
:mod:`streambind.world.sound`, :mod:`streambind.world.motion`): a person walking is a
figure moving across the camera, footsteps in the audio, a warm body in the thermal frame,
a blob in the depth frame and a periodic gait in the wearable's IMU.

Names are the labels (the ground truth the simulator writes with ``--truth``), prompts are
what a label set lists for zero-shot scoring, caption templates make varied training text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from streambind.errors import StreambindError


class UnknownActivityError(StreambindError, KeyError):
    """An activity name that is not one of the world's."""


@dataclass(frozen=True)
class Activity:
    """One activity: its label ``name``, zero-shot ``prompts`` and ``captions`` templates.

    Templates may use ``{where}`` (a place phrase) and ``{who}`` (a subject phrase).
    ``segment_s`` is the range of a scripted segment's length in seconds.
    """

    name: str
    prompts: tuple[str, ...]
    captions: tuple[str, ...]
    segment_s: tuple[float, float] = (6.0, 14.0)


_WHERE = ("in a room", "indoors", "in a living room", "in an office", "at home", "in a hallway",
          "on camera", "in a small room", "in the house", "")
_WHO = ("a person", "someone", "a man", "a woman", "a child", "an adult")

ACTIVITIES: tuple[Activity, ...] = (
    Activity("walking", ("a person walking", "someone walking across the room"),
             ("{who} walking {where}", "{who} walks across the room", "footsteps of {who} walking",
              "a photo of {who} walking {where}", "{who} strolling {where}")),
    Activity("running", ("a person running", "someone running fast"),
             ("{who} running {where}", "{who} runs quickly", "a photo of {who} running",
              "{who} jogging {where}", "fast footsteps of {who} running")),
    Activity("a person falling", ("a person falling down", "someone falls to the floor"),
             ("{who} falling down {where}", "{who} falls to the floor",
              "{who} tripping and falling",
              "a photo of {who} lying on the floor after a fall", "a fall {where}"),
             segment_s=(5.0, 10.0)),
    Activity("a door slamming", ("a door slamming", "a door being slammed shut"),
             ("a door slamming {where}", "{who} slams a door", "the sound of a door banging shut",
              "a photo of a door swinging shut", "a door closing loudly {where}"),
             segment_s=(5.0, 10.0)),
    Activity("glass breaking", ("glass breaking", "a window shattering"),
             ("glass breaking {where}", "a glass shattering on the floor", "shards of broken glass",
              "the sound of glass smashing", "a window breaking {where}"),
             segment_s=(5.0, 10.0)),
    Activity("a dog barking", ("a dog barking", "a barking dog"),
             ("a dog barking {where}", "a dog barks loudly", "a photo of a dog",
              "the sound of a dog barking", "a small dog barking {where}")),
    Activity("people talking", ("people talking", "a conversation between two people"),
             ("two people talking {where}", "people having a conversation", "voices speaking",
              "a photo of two people chatting {where}", "{who} talking to a friend")),
    Activity("music playing", ("music playing", "a song on a loudspeaker"),
             ("music playing {where}", "a loudspeaker playing a song", "the sound of music",
              "a photo of a stereo playing music", "chords of a song {where}")),
    Activity("typing on a keyboard", ("typing on a keyboard", "someone typing on a computer"),
             ("{who} typing on a keyboard", "hands typing on a computer keyboard {where}",
              "the clicking sound of typing", "a photo of a keyboard", "{who} working at a desk")),
    Activity("a fire crackling", ("a fire crackling", "flames burning in a fireplace"),
             ("a fire crackling {where}", "flames burning in a fireplace", "the sound of a fire",
              "a photo of a burning fire", "a crackling campfire")),
    Activity("sitting still", ("a person sitting still", "someone sitting quietly on a chair"),
             ("{who} sitting still {where}", "{who} sits quietly on a chair", "{who} resting",
              "a photo of {who} sitting", "{who} seated and not moving")),
    Activity("an empty room", ("an empty room", "a quiet room with nobody in it"),
             ("an empty room", "a quiet empty room {where}", "nobody is here",
              "a photo of an empty room", "silence in an empty room")),
)

ACTIVITY_NAMES: tuple[str, ...] = tuple(a.name for a in ACTIVITIES)
_BY_NAME = {a.name: a for a in ACTIVITIES}


def activity(name: str) -> Activity:
    """The activity called ``name``; :class:`UnknownActivityError` otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownActivityError(
            f"unknown activity {name!r}; the world has {', '.join(ACTIVITY_NAMES)}") from None


def activity_index(name: str) -> int:
    """Position of ``name`` in :data:`ACTIVITIES` (the class index for training)."""
    return ACTIVITY_NAMES.index(activity(name).name)


def caption(name: str, rng: np.random.Generator) -> str:
    """A random caption of activity ``name`` from its templates."""
    act = activity(name)
    template = act.captions[int(rng.integers(len(act.captions)))]
    text = template.format(where=_WHERE[int(rng.integers(len(_WHERE)))],
                           who=_WHO[int(rng.integers(len(_WHO)))])
    return " ".join(text.split())


def label_set(name: str = "world", version: int = 1, **label_fields: Any) -> dict[str, Any]:
    """A label-set document (``streambind.labels`` format) with one label per activity.

    ``label_fields`` (e.g. ``threshold=0.2``) are added to every label.
    """
    return {"name": name, "version": version,
            "labels": [{"name": a.name, "prompts": list(a.prompts), **label_fields}
                       for a in ACTIVITIES]}


def listing() -> dict[str, Any]:
    """What ``streambind world --list`` prints."""
    return {"activities": [{"name": a.name, "prompts": list(a.prompts)} for a in ACTIVITIES]}
