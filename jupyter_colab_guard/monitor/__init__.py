"""`colab-guard monitor`: the process watcher as a root daemon for multi-user machines
(JupyterHub hosts, Kubernetes nodes): every user's processes judged by the policy, the
blocked ones killed, strikes written to the shared store for the user's server to show.

``owners`` (which processes, whose), ``policy`` (the policy in force), ``strikes``
(recording), ``metrics`` (counters), ``daemon`` (the wiring), ``command`` (the CLI).
"""
