package raft

import (
	"fmt"

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

// Unmarshal decodes b, as produced by Marshal, into cc.
func (cc *ConfChange) Unmarshal(b []byte) error {
	var c ConfChange
	if err := msgpack.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("raft: unmarshal conf change: %w", err)
	}
	*cc = c
	return nil
}
