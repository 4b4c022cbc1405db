"""Loading desired state: the directory of YAML files in, validated models out.

An I/O edge: it reads files (and, for ``${ENV:..}`` / ``${FILE:..}`` references, environment
variables and secret files) and nothing else; errors name file, line, column and field.

May import: :mod:`controller.planning`, :mod:`controller.model`, :mod:`controller.core`.
Never the network, the executor or the daemon.
"""
