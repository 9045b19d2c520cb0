"""Git for writer tasks: running git (``repo``), the commit writers start from (``snapshot``),
their worktrees and branches (``worktrees``), and the merge-back into the Conductor's working
tree (``merge``, over the file entries of ``entries``)."""
