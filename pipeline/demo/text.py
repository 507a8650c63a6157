"""Transcripts from templates: a neutral everyday sentence, sometimes carrying an emotional phrase.

The emotional phrase is an emotion word in a class-free frame, plus an idiom when the emotion is
intense; several words and idioms are shared between related classes (surprise/angry, sad/worried,
...), so no single word decides.
"""

from __future__ import annotations

import numpy as np

SUBJECTS = ("I", "We", "My brother", "The manager", "Our neighbour", "She", "They", "The teacher",
            "My mother", "The driver", "He", "Our team", "The doctor", "My friend")
ACTIONS = ("went to the market", "called about the meeting", "moved the boxes to the garage",
           "read the report", "took the bus to work", "cooked dinner", "painted the kitchen",
           "sent the forms", "walked the dog", "cleaned the office", "checked the schedule",
           "bought new shoes", "fixed the bicycle", "visited the museum", "changed the password",
           "opened the window", "booked the tickets", "met the new tenant", "finished the exam",
           "watched the match", "picked up the parcel", "planted some tomatoes")
TIMES = ("this morning", "on Tuesday", "after lunch", "yesterday", "last week", "at noon", "today",
         "in the evening", "on the weekend", "an hour ago", "")

# Emotion words per class, said through class-free frames ("I feel ...", "he was ..."): a word recurs
# often enough to be learnt, and some words belong to two classes.
FRAMES = ("I'm so {}", "I feel {}", "he was {}", "honestly I'm {}", "we were all {}", "she looked {}",
          "{}, really", "I was {} about it")
WORDS: dict[str, tuple[str, ...]] = {
    "neutral": ("fine", "okay", "calm", "tired"),
    "angry": ("furious", "angry", "outraged", "upset"),
    "happy": ("happy", "delighted", "glad", "excited"),
    "sad": ("sad", "heartbroken", "miserable", "upset"),
    "worried": ("worried", "anxious", "nervous", "shocked"),
    "surprise": ("surprised", "amazed", "shocked", "excited"),
}
# Idioms per class, added when the emotion is intense; some are shared between classes.
IDIOMS: dict[str, tuple[str, ...]] = {
    "neutral": ("as usual", "nothing special", "as planned", "that's how it goes", "I suppose",
                "I thought about it all day"),
    "angry": ("this is unacceptable", "how dare they", "I've had enough", "this is ridiculous",
              "that was completely unfair", "I can't believe it"),
    "happy": ("this is wonderful", "what a lovely day", "I love it", "we had a great time", "how nice",
              "really"),
    "sad": ("I miss her so much", "it breaks my heart", "I can't stop crying", "oh no",
            "everything went wrong", "I thought about it all day"),
    "worried": ("what if it fails", "I can't sleep", "I hope nothing bad happens", "oh no",
                "I have a bad feeling", "everything went wrong"),
    "surprise": ("no way", "I had no idea", "are you serious", "what a surprise", "I can't believe it",
                 "really"),
}
# Valence qualifiers: a weak cue for where in its class a clip's valence lies.
POSITIVE = ("luckily", "thankfully", "fortunately", "mercifully")
NEGATIVE = ("unfortunately", "regrettably", "alas", "to make it worse")
EMPTY_RATE = 0.03  # share of clips with no transcript, as real corpora have


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _capital(text: str) -> str:
    return text[0].upper() + text[1:]


def _inner(text: str) -> str:
    """Lower-cased first letter for a sentence-inner position, except the pronoun I."""
    return text if text.startswith(("I ", "I'")) else text[0].lower() + text[1:]


def transcript(cue: str | None, intensity: float, valence_shift: float, rng: np.random.Generator) -> str:
    """A sentence; `cue` is the class whose phrase it carries (None: a plain neutral sentence), with an
    idiom of that class too with probability `intensity`.

    valence_shift (valence minus its class mean) adds a qualifier with probability growing with |shift|.
    """
    if rng.random() < EMPTY_RATE:
        return ""
    words = [_pick(rng, SUBJECTS), _pick(rng, ACTIONS), _pick(rng, TIMES)]
    body = " ".join(w for w in words if w)
    if rng.random() < min(1.0, abs(valence_shift) / 3):
        body = f"{_pick(rng, POSITIVE if valence_shift > 0 else NEGATIVE)} {_inner(body)}"
    if cue is None:
        return f"{_capital(body)}."
    phrase = _pick(rng, FRAMES).format(_pick(rng, WORDS[cue]))
    if rng.random() < intensity:
        phrase = f"{_pick(rng, IDIOMS[cue])}, {_inner(phrase)}"
    first, second = (phrase, body) if rng.random() < 0.5 else (body, phrase)
    return f"{_capital(first)}, {_inner(second)}."
