"""Benchmarks, one module each, on a shared measuring kit (:mod:`.kit`).

| command                   | module         | compares                                                   |
| ------------------------- | -------------- | ---------------------------------------------------------- |
| ``ovseg benchmark``       | :mod:`.stages` | every stage on one photo: load, cold, warm, peak memory     |
| ``benchmark-masks``       | :mod:`.masks`  | mask generators: seconds, decoder calls, oracle mIoU        |
| ``benchmark-engines``     | :mod:`.engines`| local engine versus Ray with 1, 2 ... actors                |
| ``benchmark-embed``       | :mod:`.embed`  | CLIP feature variants: crops, dense, mask tokens            |
| ``benchmark-score``       | :mod:`.score`  | texts encoded per photo versus once per run                 |

Speed and memory targets live here, measured side by side in one run, not in timed tests.
"""
