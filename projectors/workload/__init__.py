"""Realistic social activity written to the source database (demo, tests, benchmarks).

Every operation of the app: users sign up and edit profiles, post (public or private, with topics),
edit and delete posts, reply, react, follow and unfollow, block and mute, read their notifications.
Follower counts follow a power law: a few authors attract most follows. The statements that write
each table and the operation mix are defined once (``statements.py``), for two generators with two
contracts:

- :class:`SocialWorkload` (``social.py``: ``projectors sample``, the demo, the tests): random
  operations on one connection, committed every few; an operation that finds nothing to do (a follow
  that exists, a delete of an empty table) changes nothing, and ``done`` counts the rows changed.
  It deletes users too (a cascade of unbounded size) and reads notifications.
- the planned load of the benchmarks (``mix.py``, ``load.py``), shaped for volume: :func:`seed`
  writes a population with COPY in large transactions, :func:`bulk` writes a mix of operations many
  rows per transaction (pipelined, one round trip per transaction), :func:`steady` writes one
  operation per transaction at a paced rate and reports the commit time of every new public post,
  :func:`celebrity_post` is one post for a fan-out measurement.

Contract of the planned load: the :class:`Population` (``population.py``) knows every row it wrote,
so each statement changes exactly the rows it was planned to (no key conflicts, no failed
statements, no deletes of missing rows) and the returned counters equal the rows changed, i.e. the
change events capture publishes (on the topics each delete is also followed by a tombstone).
Deleting a post deletes its replies and reactions by ``ON DELETE CASCADE``: those rows are counted
as ``replies.cascade_delete`` and ``reactions.cascade_delete``. This holds while the population's
rows are written by the planned load alone, from one thread at a time.
"""

from projectors.workload.load import SteadyReport, bulk, celebrity_post, seed, steady
from projectors.workload.mix import Operation, OperationMix
from projectors.workload.population import Bag, Population, handle_of, new_id, text
from projectors.workload.social import SocialWorkload
from projectors.workload.statements import MIX, SOCIAL_EXTRA, TOPICS, WORDS

__all__ = [
    "MIX", "SOCIAL_EXTRA", "TOPICS", "WORDS", "Bag", "Operation", "OperationMix", "Population", "SocialWorkload",
    "SteadyReport", "bulk", "celebrity_post", "handle_of", "new_id", "seed", "steady", "text",
]
