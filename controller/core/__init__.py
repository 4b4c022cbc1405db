"""The pure core's kernel: the exception tree and the retry policy.

Owns :mod:`~controller.core.errors` (one exception type per API condition, each carrying
status, parsed envelope, ``fly-request-id`` and a retry hint) and :mod:`~controller.core.retry`
(``classify()``: one retry decision per error; backoff maths; token buckets).

May import: the standard library only.  No I/O, no clock reads, no global randomness: time and
randomness come in as arguments, so every decision is a deterministic function of its inputs.
Everything else in ``controller`` may import this package.
"""
