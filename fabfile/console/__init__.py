"""Commands on a deployed cluster: `fab manage -- ARGS`, `fab logs`, `fab ssh ROLE [N]`.

`build` holds the pure parts (argv and command builders, node choice, the terminal decision), `streams`
the local I/O (stdin for a remote command, lines prefixed by node, following many nodes at once), `tasks`
the thin tasks, and `executor` lets a task take what follows `--` on the command line.
"""
