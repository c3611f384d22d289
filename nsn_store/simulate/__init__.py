"""Load simulation: seed tenants, run real workers against a fake provider, report.

:func:`run_simulation` seeds (:mod:`._seed`), drives :class:`~nsn_store.Worker`
or :class:`~nsn_store.AsyncWorker` instances (:mod:`._workers`) and checks that
no message was delivered twice or lost (:mod:`._report`).
"""

from nsn_store.simulate._report import SimulationConfig, SimulationReport
from nsn_store.simulate._run import run_simulation

__all__ = ["SimulationConfig", "SimulationReport", "run_simulation"]
