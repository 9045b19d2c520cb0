"""Git for writer tasks: running git (``repo``), the snapshot writers start from (``snapshot``),
their worktrees and branches (``worktrees``), and the merge-back into the working tree
(``merge``, ``workingtree``)."""
