"""The runtime of a run: its supervisor process (``python -m claude_fanout.runtime RUN_DIR``).

``scheduler`` is the loop, ``task_run`` one task's attempts, ``limits`` what the run may use of
the project (leases, claude start spacing) and of its budget, ``records`` what the supervisor
writes about the run (events, snapshot, heartbeat).
"""
