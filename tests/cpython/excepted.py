"""CPython tests that corral does not pass, on purpose; each with a one-line reason.

Keys are test ids below ``test.test_concurrent_futures.``, with ``*`` wildcards
(``fnmatch``). A test is listed here only when corral removes a wall the test relies
on, or the test reads a CPython private attribute; any other failure is a bug.
"""

_CRASH = (
    "a worker that dies fails only its task, with WorkerCrashed (or SerializationError); "
    "the stdlib breaks the pool with BrokenProcessPool"
)

EXCEPTED: dict[str, str] = {
    # ---- crash isolation: the wall corral removes
    "test_deadlock.*.test_crash_at_task_unpickle": _CRASH,
    "test_deadlock.*.test_crash_big_data": _CRASH,
    "test_deadlock.*.test_crash_during_func_exec_on_worker": _CRASH,
    "test_deadlock.*.test_crash_during_result_pickle_on_worker": _CRASH,
    "test_deadlock.*.test_error_at_task_unpickle": _CRASH,
    "test_deadlock.*.test_error_during_result_unpickle_in_result_handler": _CRASH,
    "test_deadlock.*.test_exit_at_task_unpickle": _CRASH,
    "test_deadlock.*.test_exit_during_result_pickle_on_worker": _CRASH,
    "test_deadlock.*.test_exit_during_result_unpickle_in_result_handler": _CRASH,
    "test_deadlock.*.test_shutdown_deadlock": _CRASH,
    "test_process_pool.*.test_killed_child": _CRASH,
    # ---- CPython private attributes
    "test_deadlock.*.test_shutdown_deadlock_pickle": "reads _executor_manager_thread, a "
    "CPython private (corral's manager thread is another object)",
    "test_shutdown.ProcessPool*.test_del_shutdown": "reads _executor_manager_thread and "
    "_call_queue, CPython privates (the dropped-pool case is in tests/test_dropin.py)",
    "test_shutdown.ProcessPool*.test_shutdown_no_wait": "reads _executor_manager_thread and "
    "_call_queue, CPython privates",
    "test_process_pool.*.test_traceback": "expects __cause__ to be exactly CPython's private "
    "_RemoteTraceback; corral's is WorkerTraceback, with real frames and the same .tb",
    # ---- choices corral makes on purpose
    "test_process_pool.*.test_max_tasks_per_child_defaults_to_spawn_context": "corral's "
    "default stays forkserver, which replaces workers as safely as spawn, and faster",
    "test_process_pool.ProcessPoolFork*.test_max_tasks_per_child": "expects ValueError: "
    "corral allows max_tasks_per_child with fork",
    "test_process_pool.*.test_saturation": "expects every worker started inside submit(); "
    "corral's manager thread starts them on demand, after submit returns",
    "test_shutdown.ProcessPool*.test_processes_terminate": "expects workers started inside "
    "submit(); corral's manager thread starts them on demand, after submit returns",
    "test_shutdown.ProcessPool*.test_cancel_futures": "expects some of 50 tasks to have "
    "started when shutdown(cancel_futures=True) follows the submits; corral's workers may "
    "not have started yet, and then all 50 are cancelled",
    "test_process_pool.*.test_python_finalization_error": "fakes a failure to start the "
    "2nd thread; corral's map starts a feeder thread, so map() raises that RuntimeError "
    "instead of the pool breaking",
}
