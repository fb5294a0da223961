package raft

import (
	"fmt"

	"github.com/raftkv/raftkv/internal/codec"
	"github.com/vmihailenco/msgpack/v5"
)

// Marshal encodes cc with msgpack (the Data of an EntryConfChange).
func (cc ConfChange) Marshal() []byte {
	b, err := msgpack.Marshal(&cc)
	if err != nil {
		// A struct of integers and bytes always encodes.
		panic(fmt.Sprintf("raft: marshal conf change: %v", err))
	}
	return b
}

// Unmarshal decodes b, as produced by Marshal, into cc. Lengths in b are
// validated before decoding (internal/codec), since log entries come off
// the network.
func (cc *ConfChange) Unmarshal(b []byte) error {
	var c ConfChange
	if err := codec.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("raft: unmarshal conf change: %w", err)
	}
	*cc = c
	return nil
}
