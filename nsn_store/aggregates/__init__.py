"""Daily, weekly and monthly event counts, rolled up by one server pipeline.

:class:`Aggregates` (and :class:`AsyncAggregates`) run the ``$dateTrunc`` /
``$merge`` rollup pipeline of :mod:`._service` over the period arithmetic of
:mod:`._periods`.
"""

from nsn_store.aggregates._periods import PERIODS, RollupWindow
from nsn_store.aggregates._service import Aggregates, AsyncAggregates

__all__ = ["PERIODS", "Aggregates", "AsyncAggregates", "RollupWindow"]
