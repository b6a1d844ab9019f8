"""raft_impl: the Raft key/value store that splitbrain ships as its system under test."""
