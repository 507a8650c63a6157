"""The fine-grained (MER-FG) label-list model: open-vocabulary label lists predicted per clip.

Vocabulary: every word of the training label lists (the manifest's `label_list`, words joined by ";"),
lower-cased and folded to one form: through the emotion wheel's `format.csv` when train.fine_grained.wheel
names its folder (a form -> its alphabetically first base word, as the organisers fold it), else by a
suffix fold inside the vocabulary ("sadly", "sadness" -> "sad" when "sad" is a word of the lists); words
seen fewer than `min_count` times are left out.

Model: the attention fusion of the discrete model (same features, z-scoring, hidden sizes, dropout and
Adam settings, train.fusion) with one logit per word, trained multi-label with binary cross-entropy, K folds
stacked in one model; each fold keeps the epoch of its lowest validation loss. The out-of-fold
probabilities choose the rule that turns probabilities into a list, the one with the best mean per-clip
F1 over the vocabulary: the top k words (k = 1 .. max_labels), or every word above a threshold (at most
max_labels, and the top word when none passes). A clip then gets the fold ensemble's mean probabilities
through that rule: never an empty list.

Training clips: every clip with a label list outside the candidate split (test1, the clips the challenge
scores); the candidates' own lists, when a corpus has them, are the truth evaluate scores against.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from pipeline.config import FineGrainedParams, FusionParams
from pipeline.errors import InputError
from pipeline.labels import CANDIDATE_SPLIT, LIST_COLUMN, LIST_SEPARATOR, split_list
from pipeline.modalities import parse_subset
from pipeline.training.data import Table
from pipeline.training.folds import make_folds
from pipeline.training.runtime import training_runtime

SUFFIXES = ("s", "es", "d", "ed", "ing", "ly", "ness")  # the fold without a wheel: "sadness" -> "sad"
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)


def has_label_lists(rows: pd.DataFrame) -> bool:
    return LIST_COLUMN in rows.columns and rows[LIST_COLUMN].map(lambda v: bool(split_list(v))).any()


def clean(word: str) -> str:
    return re.sub(r"\s+", " ", word.lower().strip())


def wheel_forms(folder: Path) -> dict[str, str]:
    """format.csv of an emotion-wheel folder: each form -> its alphabetically first base word."""
    from pipeline.emotion_wheel import read_forms

    return {form.lower(): min(bases) for form, bases in read_forms(folder / "format.csv").items()}


def suffix_fold(words: Iterable[str]) -> dict[str, str]:
    """Each word -> the shortest word of `words` it extends by inflection suffixes ("sadnesses" -> "sad")."""
    known = set(words)

    def root(word: str) -> str:
        for suffix in SUFFIXES:
            stem = word[: -len(suffix)]
            if word.endswith(suffix) and len(stem) >= 3 and stem in known:
                return root(stem)
        return word

    return {w: root(w) for w in known}


@dataclass(frozen=True)
class Vocabulary:
    words: tuple[str, ...]        # model order
    fold: dict[str, str]          # cleaned surface word -> vocabulary word (or a word left out)

    @classmethod
    def learn(cls, lists: Iterable[list[str]], forms: dict[str, str] | None = None, min_count: int = 1) -> Vocabulary:
        lists = [[clean(w) for w in words] for words in lists]
        surface = {w for words in lists for w in words}
        fold = {w: forms.get(w, w) for w in surface} if forms else suffix_fold(surface)
        counts = Counter(w for words in lists for w in {fold[x] for x in words})
        words = tuple(sorted(w for w, n in counts.items() if n >= min_count))
        if not words:
            raise InputError(f"no word of the training label lists occurs {min_count} times "
                             f"(train.fine_grained.min_count); lower it or add label lists")
        return cls(words, fold)

    @cached_property
    def index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.words)}

    def normalise(self, words: Iterable[str]) -> list[str]:
        """The vocabulary words of a list, once each, in order; words outside the vocabulary dropped."""
        out = (self.fold.get(clean(w), clean(w)) for w in words)
        return list(dict.fromkeys(w for w in out if w in self.index))

    def targets(self, lists: Iterable[list[str]]) -> np.ndarray:
        lists = list(lists)
        Y = np.zeros((len(lists), len(self.words)), bool)
        for r, words in enumerate(lists):
            Y[r, [self.index[w] for w in self.normalise(words)]] = True
        return Y


def top_words(probs: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """(word indices, probabilities) of each row's `cap` most probable words, most probable first (the lower
    index first on ties); a partial sort, so a large vocabulary costs O(rows x words)."""
    cap = min(cap, probs.shape[1])
    idx = np.argpartition(-probs, cap - 1, axis=1)[:, :cap]
    p = np.take_along_axis(probs, idx, 1)
    order = np.lexsort((idx, -p), axis=1)
    return np.take_along_axis(idx, order, 1), np.take_along_axis(p, order, 1)


@dataclass(frozen=True)
class ListRule:
    """Probabilities -> a list: the top `k` words, or (k = 0) the words above `threshold`, at most `cap`."""
    k: int
    threshold: float
    cap: int

    def sizes(self, top_p: np.ndarray) -> np.ndarray:
        """Each row's list length, from its top probabilities (top_words)."""
        if self.k:
            return np.full(len(top_p), self.k)
        return np.clip((top_p >= self.threshold).sum(1), 1, self.cap)

    def apply(self, probs: np.ndarray) -> list[np.ndarray]:
        """Each row's chosen word indices, most probable first."""
        idx, p = top_words(probs, self.cap)
        return [row[:n] for row, n in zip(idx, self.sizes(p))]

    def describe(self) -> dict:
        return {"top_k": self.k} if self.k else {"threshold": self.threshold, "max_labels": self.cap}


def sample_f1(Y: np.ndarray, top_idx: np.ndarray, sizes: np.ndarray) -> float:
    """Mean over clips with a true word of 2|T & P| / (|T| + |P|), P the first `sizes` of `top_idx`."""
    true = Y.sum(1)
    scored = true > 0
    if not scored.any():
        return float("nan")
    hit = Y[np.arange(len(Y))[:, None], top_idx].astype(bool) & (np.arange(top_idx.shape[1]) < sizes[:, None])
    return float(np.mean(2 * hit.sum(1)[scored] / (true[scored] + sizes[scored])))


def choose_rule(Y: np.ndarray, probs: np.ndarray, max_labels: int) -> tuple[ListRule, float]:
    """The rule with the best out-of-fold sample F1 (the first on ties: top-1 first)."""
    cap = min(max_labels, Y.shape[1])
    rules = [ListRule(k, 0.0, cap) for k in range(1, cap + 1)] + [ListRule(0, float(t), cap) for t in THRESHOLDS]
    idx, p = top_words(probs, cap)
    scored = [(sample_f1(Y, idx, rule.sizes(p)), i) for i, rule in enumerate(rules)]
    best, i = max(scored, key=lambda s: (s[0], -s[1]))
    return rules[i], best


@dataclass
class ListModel:
    vocabulary: Vocabulary
    modalities: tuple[str, ...]
    ensemble: object              # AttentionFusion with n_models = folds
    rule: ListRule
    prior: np.ndarray             # word frequencies of the training lists: the prediction without any modality
    summary: dict

    def probabilities(self, table: Table) -> tuple[np.ndarray, np.ndarray]:
        """(mean fold probabilities, whether the clip had a modality) for every row of `table`."""
        present = table.any_present(self.modalities)
        probs = np.tile(self.prior, (len(table.rows), 1))
        if present.any():
            probs[present] = _predict(self.ensemble, table.take(present, self.modalities), self.modalities)
        return probs, present

    def predict(self, table: Table) -> pd.DataFrame:
        probs, present = self.probabilities(table)
        words = np.array(self.vocabulary.words)
        return pd.DataFrame({"sample_id": table.rows["sample_id"].to_numpy(),
                             LIST_COLUMN: [LIST_SEPARATOR.join(words[p]) for p in self.rule.apply(probs)],
                             "fallback": ~present})


def training_rows(tables: dict[str, Table]) -> Table:
    """Clips with a label list from every clean table but the candidates', stacked in one table."""
    parts = [t.take(t.rows[LIST_COLUMN].map(lambda v: bool(split_list(v))).to_numpy())
             for name, t in tables.items() if "@" not in name and name != CANDIDATE_SPLIT and LIST_COLUMN in t.rows]
    parts = [p for p in parts if len(p.rows)]
    if not parts:
        raise InputError(f"no clip outside {CANDIDATE_SPLIT} has a {LIST_COLUMN}: the label-list model has nothing "
                         f"to learn from")
    first = parts[0]
    return Table(pd.concat([p.rows for p in parts], ignore_index=True),
                 {m: np.concatenate([p.X[m] for p in parts]) for m in first.X},
                 {m: np.concatenate([p.present[m] for p in parts]) for m in first.X}, first.norm, labels=first.labels)


def fit(tables: dict[str, Table], subset: str, params: FusionParams, fine: FineGrainedParams, folds: int,
        seed: int) -> ListModel:
    """Cross-validate the label-list model on `subset`'s modalities and choose its list rule."""
    modalities = parse_subset(subset)
    train = training_rows(tables)
    train = train.take(train.any_present(modalities), modalities)
    lists = [split_list(v) for v in train.rows[LIST_COLUMN]]
    forms = wheel_forms(Path(fine.wheel)) if fine.wheel else None
    vocabulary = Vocabulary.learn(lists, forms, fine.min_count)
    Y = vocabulary.targets(lists)
    k = min(folds, len(Y))
    if k < 2:
        raise InputError(f"{len(Y)} clip(s) with a label list and a modality: too few for cross-validation")
    fold = make_folds(len(Y), k, seed)
    ensemble, oof, best_epoch = _cross_validate(train, modalities, Y, fold, params, seed)
    rule, f1 = choose_rule(Y, oof, fine.max_labels)
    prior = Y.mean(0, dtype=np.float64)
    summary = {"subset": subset, "seed": seed, "items": len(Y), "vocabulary": len(vocabulary.words),
               "rule": rule.describe(), "oof_sample_f1": f1, "best_epoch": [int(e) for e in best_epoch]}
    return ListModel(vocabulary, modalities, ensemble, rule, prior, summary)


def _inputs(table: Table, modalities, rows=None):
    rows = slice(None) if rows is None else rows
    xs = [torch.from_numpy(np.nan_to_num(table.X[m][rows]).astype(np.float32)) for m in modalities]
    present = torch.from_numpy(np.stack([table.present[m][rows] for m in modalities], axis=-1))
    return xs, present


def _forward(model, xs, present, rows: torch.Tensor, chunk: int = 1024):
    """Per-fold logits on per-fold rows (K, n), `chunk` rows at a time: yields (slice, (K, c, V) logits)."""
    for lo in range(0, rows.shape[1], chunk):
        idx = rows[:, lo:lo + chunk]
        yield slice(lo, lo + idx.shape[1]), model([x[idx] for x in xs], present[idx]).logits


def _predict(model, table: Table, modalities) -> np.ndarray:
    """(n, V): the mean over folds of the probabilities, for every row of `table`."""
    model.eval()
    xs, present = _inputs(table, modalities)
    rows = torch.arange(len(table.rows)).expand(model.n_models, -1)
    out = np.empty((len(table.rows), model.fc_emotion.weight.shape[-1]), np.float32)
    with torch.inference_mode():
        for sl, logits in _forward(model, xs, present, rows):
            out[sl] = torch.sigmoid(logits).mean(0).numpy()
    return out


def _cross_validate(train: Table, modalities, Y: np.ndarray, fold: np.ndarray, p: FusionParams, seed: int):
    """All folds at once as one stacked model: per step every fold takes a batch of its own training rows
    (the shorter folds' orders wrap), loss = the folds' summed mean BCE; each fold keeps its epoch of lowest
    validation loss. Returns the model at those epochs, the out-of-fold probabilities and the epochs."""
    from pipeline.models.fusion import AttentionFusion

    k = int(fold.max()) + 1
    # one torch thread: batch-sized matmuls lose more to thread handoff than they gain (training/fusion.py)
    with torch.random.fork_rng(devices=[]), training_runtime(1):
        torch.manual_seed(seed)
        model = AttentionFusion([train.X[m].shape[1] for m in modalities], Y.shape[1], p.hidden, p.dropout,
                                p.attention_norm, n_models=k)
        xs, present = _inputs(train, modalities)
        y = torch.from_numpy(Y)
        rng = np.random.default_rng(seed)
        train_rows = [np.flatnonzero(fold != f) for f in range(k)]
        val_rows = [np.flatnonzero(fold == f) for f in range(k)]
        vmax = max(map(len, val_rows))
        val = torch.from_numpy(np.stack([np.resize(r, vmax) for r in val_rows]))
        val_n = torch.tensor([len(r) for r in val_rows])
        opt = torch.optim.Adam(model.parameters(), lr=p.lr, weight_decay=p.weight_decay, fused=True)
        best_loss, best_epoch = np.full(k, np.inf), np.full(k, -1)
        best = {name: t.detach().clone() for name, t in model.state_dict().items()}
        steps = math.ceil(max(map(len, train_rows)) / p.batch_size)
        for epoch in range(p.epochs):
            model.train()
            order = np.stack([np.resize(rng.permutation(r), steps * p.batch_size) for r in train_rows])
            for s in range(steps):
                idx = torch.from_numpy(order[:, s * p.batch_size:(s + 1) * p.batch_size])
                out = model([x[idx] for x in xs], present[idx]).logits
                loss = F.binary_cross_entropy_with_logits(out, y[idx].float(), reduction="none").mean((1, 2)).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            model.eval()
            total = torch.zeros(k)
            with torch.inference_mode():
                for sl, logits in _forward(model, xs, present, val):
                    per_row = F.binary_cross_entropy_with_logits(logits, y[val[:, sl]].float(), reduction="none").mean(-1)
                    total += (per_row * (torch.arange(sl.start, sl.stop) < val_n[:, None])).sum(1)
            losses = (total / val_n).numpy()
            better = np.flatnonzero(losses < best_loss)
            if len(better):
                best_loss[better], best_epoch[better] = losses[better], epoch
                for name, t in model.state_dict().items():
                    best[name][better] = t[better]
    model.load_state_dict(best)
    model.eval()
    oof = np.zeros(Y.shape, np.float32)
    with torch.inference_mode():
        for sl, logits in _forward(model, xs, present, val):
            for f, rows in enumerate(val_rows):
                oof[rows[sl]] = torch.sigmoid(logits[f, : len(rows[sl])]).numpy()
    return model, oof, best_epoch


def predictions(model: ListModel, tables: dict[str, Table]) -> pd.DataFrame:
    """The label lists of the candidates (the clean candidate table), with `test` naming it."""
    if CANDIDATE_SPLIT not in tables:
        return empty()
    frame = model.predict(tables[CANDIDATE_SPLIT])
    frame.insert(0, "test", CANDIDATE_SPLIT)
    return frame


def empty() -> pd.DataFrame:
    """The label-list predictions of a corpus without label lists."""
    return pd.DataFrame({"test": pd.Series(dtype=str), "sample_id": pd.Series(dtype=str),
                         LIST_COLUMN: pd.Series(dtype=str), "fallback": pd.Series(dtype=bool)})
