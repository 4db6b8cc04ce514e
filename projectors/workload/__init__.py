"""Realistic social activity written to the source database (demo, tests, benchmarks).

Every operation of the app: users sign up and edit profiles, post (public or private, with topics),
edit and delete posts, reply, react, follow and unfollow, block and mute, read their notifications.
Follower counts follow a power law: a few authors attract most follows (and posts). One generator,
:class:`OperationMix` (``mix.py``), decides every operation: it draws one in a mix's proportions
from what the :class:`Population` (``population.py``) knows exists, records its effect there at
once and returns it as an :class:`Operation` (statement, parameters, rows it changes). Two ways
execute the operations, with two contracts:

- the sample workload, :class:`SocialWorkload` (``social.py``: ``projectors sample``, the demo, the
  tests): the :data:`SAMPLE_MIX` (the planned mix plus user deletes, a cascade of unbounded size,
  and notification reads) on one connection, committed every few. It tolerates rows it does not
  know (other writers, users and posts set from the database): an insert of a row that exists or a
  delete of a row already gone changes nothing, and ``done`` counts the rows PostgreSQL reports
  changed.
- the planned load of the benchmarks (``load.py``), shaped for volume, in the :data:`MIX`
  proportions: :func:`seed` writes a population with COPY in large transactions, :func:`bulk`
  writes operations many rows per transaction (pipelined, one round trip per transaction),
  :func:`steady` writes one operation per transaction at a paced rate and reports the commit time
  of every new public post, :func:`celebrity_post` is one post for a fan-out measurement.

Contract of the planned load: the :class:`Population` (``population.py``) knows every row it wrote,
so each statement changes exactly the rows it was planned to (no key conflicts, no failed
statements, no deletes of missing rows) and the returned counters equal the rows changed, i.e. the
change events capture publishes (on the topics each delete is also followed by a tombstone).
Deleting a post deletes its replies and reactions by ``ON DELETE CASCADE``: those rows are counted
as ``replies.cascade_delete`` and ``reactions.cascade_delete``. This holds while the population's
rows are written by the planned load alone, from one thread at a time. :data:`MIX` gives user
deletes and notification reads no weight (see ``statements.py``).
"""

from projectors.workload.load import SteadyReport, bulk, celebrity_post, seed, steady
from projectors.workload.mix import Operation, OperationMix
from projectors.workload.population import Bag, Population, handle_of, new_id, text
from projectors.workload.social import SocialWorkload
from projectors.workload.statements import MIX, SAMPLE_MIX, SOCIAL_EXTRA, TOPICS, WORDS

__all__ = [
    "MIX", "SAMPLE_MIX", "SOCIAL_EXTRA", "TOPICS", "WORDS", "Bag", "Operation", "OperationMix", "Population",
    "SocialWorkload", "SteadyReport", "bulk", "celebrity_post", "handle_of", "new_id", "seed", "steady", "text",
]
