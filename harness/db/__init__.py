"""Databases under test: the DB/Client protocol and one adapter module per system.

``base`` is the protocol and the registry (``--db NAME`` and the
``splitbrain.dbs`` entry points); ``options`` says which read modes and
networks fit which database. ``process`` is the shared node-process lifecycle,
``node_client`` the per-node client rotation, ``wire_client`` and ``wire`` the
frame client and the DB for nodes speaking raft_impl's client protocol. One
module per system: ``raft_impl``, ``etcd`` (with ``http``), ``pysyncobj``
(with the node program ``pysyncobj_node``) and ``maelstrom``.
"""
