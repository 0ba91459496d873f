"""The keyword index in memory: the channel finder's term ranking without a database statement per query.

At 100,000 channels PostgreSQL's ranking (``tern.channel_finder.finder._RANK_SQL``) scored every channel sharing
a word with the query ("beam current": ~60,000) and took 120 to 320 ms a query. This index holds the same
postings in numpy arrays, built once per database load from the ``channels`` rows, and ranks with the same
formula: for every query term, BM25's idf (``tern.channel_finder.finder.idf``) times 1.0 when the term is among
the channel's name words (tsvector weight A) or ``DESCRIPTION_WEIGHT`` when only among its other words (B), plus
the channel's prior; ties by name in the database's collation (documents are numbered in ``ORDER BY name``
order, so the lower number wins). A query costs one pass over the postings of its terms (``numpy.bincount``),
a dense score vector of one float per channel (0.1 ms at 100,000) and a partial sort of the matches
(``numpy.argpartition``), a few milliseconds at 100,000 channels for the commonest words.

The words are read as PostgreSQL's ``to_tsvector('simple', ...)`` reads the stored ``name_words`` and
``text_words`` (whitespace-separated ``[a-z0-9]+`` words, ``tern.channel_finder.naming.words``);
``tests/test_channel_finder.py`` checks the two agree on every bundled channel and that the ranking equals the
SQL one. Pure: no I/O; the finder builds it (``ChannelFinder.snapshot``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

DESCRIPTION_WEIGHT = 0.4  # a term found only in the description counts this much of one in the name words


def idf(n: float, df: float) -> float:
    """BM25's inverse document frequency, ln(1 + (n - df + 0.5) / (df + 0.5)) (Robertson and Zaragoza 2009)."""
    return math.log(1 + max(n - df + 0.5, 0.5) / (df + 0.5))


@dataclass(frozen=True)
class IndexedChannel:
    """What a hit shows of a channel: name, description, units, writable; ``prior`` breaks ties."""

    name: str
    description: str
    units: str
    writable: bool
    prior: float


@dataclass
class KeywordIndex:
    """Postings of every search word over the channels, and what a hit needs, numbered in name order.

    Build with :meth:`build`. ``postings[word]`` is ``(ids, factor)``: ascending channel numbers (int32) and the
    share of the word's idf each scores (float64: 1.0 among its name words, else ``DESCRIPTION_WEIGHT``)."""

    channels: list[IndexedChannel] = field(default_factory=list)
    prior: np.ndarray = field(default_factory=lambda: np.zeros(0))
    postings: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    exact: dict[str, list[int]] = field(default_factory=dict)  # name or alias -> channel numbers
    by_name: dict[str, int] = field(default_factory=dict)  # name -> channel number

    @classmethod
    def build(cls, rows: Iterable[tuple[str, Sequence[str], str, str, bool, float, str, str]]) -> KeywordIndex:
        """An index from rows ``(name, aliases, description, units, writable, prior, name_words, text_words)``
        in ``ORDER BY name`` order (the database's collation; ties rank in this order).

        Words are numbered as they come (one dict look-up each); the ``(word, channel)`` pairs are then grouped
        by numpy (one sort), a word among a channel's name words counting as a name word. Raises ``ValueError``
        when a name repeats."""
        idx = cls()
        vocab: dict[str, int] = {}
        word_ids: list[int] = []
        doc_ids: list[int] = []
        in_name: list[bool] = []
        priors: list[float] = []
        for i, (name, aliases, description, units, writable, prior, name_words, text_words) in enumerate(rows):
            if name in idx.by_name:
                raise ValueError(f"channel {name!r} appears twice in the index rows")
            idx.by_name[name] = i
            idx.channels.append(IndexedChannel(name, description, units, bool(writable), float(prior)))
            priors.append(float(prior))
            a = [vocab.setdefault(w, len(vocab)) for w in name_words.split()]
            b = [vocab.setdefault(w, len(vocab)) for w in text_words.split()]
            word_ids += a
            word_ids += b
            doc_ids += [i] * (len(a) + len(b))
            in_name += [True] * len(a)
            in_name += [False] * len(b)
            for key in dict.fromkeys([name, *aliases]):
                idx.exact.setdefault(key, []).append(i)
        n = len(idx.channels)
        # float32 as PostgreSQL's real column holds it, then float64 for the sums
        idx.prior = np.asarray(priors, dtype=np.float32).astype(np.float64)
        if not word_ids:
            return idx
        pair = np.asarray(word_ids, dtype=np.int64) * max(n, 1) + np.asarray(doc_ids, dtype=np.int64)
        flag = np.asarray(in_name, dtype=bool)
        order = np.lexsort((~flag, pair))  # by (word, channel), a name-word occurrence first
        pair, flag = pair[order], flag[order]
        first = np.ones(len(pair), dtype=bool)
        first[1:] = pair[1:] != pair[:-1]  # one posting per (word, channel): its first, the name word if any
        pair, flag = pair[first], flag[first]
        wid, doc = pair // max(n, 1), (pair % max(n, 1)).astype(np.int32)
        factor = np.where(flag, 1.0, DESCRIPTION_WEIGHT)
        starts = np.flatnonzero(np.r_[True, wid[1:] != wid[:-1]])
        ends = np.r_[starts[1:], len(wid)]
        words = list(vocab)
        for s0, s1 in zip(starts.tolist(), ends.tolist(), strict=True):
            idx.postings[words[int(wid[s0])]] = (doc[s0:s1], factor[s0:s1])
        return idx

    def __len__(self) -> int:
        return len(self.channels)

    def df(self, word: str) -> int:
        """How many channels contain ``word`` (name words or other words): ``ts_stat``'s ``ndoc``."""
        p = self.postings.get(word)
        return 0 if p is None else len(p[0])

    def weights(self, terms: Sequence[str]) -> list[tuple[str, float]]:
        """``(term, idf)`` for each term some channel contains, in query order (repeats kept, as the SQL had)."""
        n = float(len(self.channels) or 1)
        return [(t, idf(n, float(self.df(t)))) for t in terms if self.df(t)]

    def exact_ids(self, text: str, limit: int) -> list[int]:
        """Channels whose name is ``text`` or ``text`` upper-cased, or with ``text`` among their aliases: the
        first ``limit`` in name order."""
        found = set(self.exact.get(text, ())) | set(self.exact.get(text.upper(), ()))
        return sorted(found)[:limit]

    def rank(self, terms: Sequence[str], want: int, exclude: Iterable[int] = ()) -> list[tuple[int, float]]:
        """The ``want`` best ``(channel number, score)`` among channels containing any of ``terms`` (the module's
        formula), best first, ties by name; channels in ``exclude`` are skipped. ``[]`` when no term is known."""
        weights = self.weights(terms)
        if not weights or want <= 0:
            return []
        ids_parts, contrib_parts = [], []
        for word, w in weights:
            ids, factor = self.postings[word]
            ids_parts.append(ids)
            contrib_parts.append(factor * w)
        ids = np.concatenate(ids_parts)
        # every contribution is > 0 (idf > 0), so a channel matched any term exactly when its sum is > 0
        score = np.bincount(ids, weights=np.concatenate(contrib_parts), minlength=len(self.channels))
        for i in exclude:
            score[i] = 0.0
        cand = np.flatnonzero(score)  # ascending: name order
        if not len(cand):
            return []
        s = score[cand] + self.prior[cand]
        if len(cand) > want:
            kth = np.partition(s, len(s) - want)[len(s) - want]  # the want-th best score
            keep = s >= kth
            cand, s = cand[keep], s[keep]
        order = np.argsort(-s, kind="stable")[:want]  # stable: equal scores keep name order
        return [(int(cand[j]), float(s[j])) for j in order]
