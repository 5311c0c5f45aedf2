//! Landlock confinement of agent subprocesses (see issue: agent sandbox).
