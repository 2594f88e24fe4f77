package record

import (
	"context"
	"fmt"
)

// BinMap is a record's bins by name. Values are int64 (every Go integer
// type is accepted when writing), float64, string, []byte, bool, []any
// (a list) and map[any]any (a map); lists and maps nest.
type BinMap map[string]any

// Record is a record read by Get.
type Record struct {
	// Key is the key the record was read with.
	Key Key
	// Bins holds the bins read (every bin, or the ones named).
	Bins BinMap
	// Generation is the record's generation (its write count, wrapping).
	Generation uint32
	// Expiration is the record's time to live in seconds as of the read
	// (TTLDontExpire if it never expires).
	Expiration uint32
}

// kind is a command's kind.
type kind uint8

const (
	kindGet kind = iota
	kindExists
	kindPut
	kindDelete
	kindTouch
	kindAdd
)

var kindNames = [...]string{"get", "exists", "put", "delete", "touch", "add"}

func (k kind) String() string { return kindNames[k] }

// command is one command's request and its outcome.
type command struct {
	kind  kind
	key   Key
	bins  BinMap   // put, add
	names []string // get: the bins to read (nil: all)
	wp    *WritePolicy

	rec   *Record // get: filled by decode
	found bool    // exists, delete: the record existed
}

var defaultPolicy = *NewPolicy()
var defaultWritePolicy = *NewWritePolicy(0, 0)

func readPolicy(p *Policy) *Policy {
	if p == nil {
		return &defaultPolicy
	}
	return p
}

func writePolicy(p *WritePolicy) *WritePolicy {
	if p == nil {
		return &defaultWritePolicy
	}
	return p
}

// Get reads the record of key: every bin, or the bins named. A record that
// does not exist gives an error wrapping ErrKeyNotFound. A nil policy
// means NewPolicy().
func (c *Client) Get(ctx context.Context, p *Policy, key Key, binNames ...string) (*Record, error) {
	cmd := command{kind: kindGet, key: key, names: binNames}
	if err := c.execute(ctx, readPolicy(p), &cmd); err != nil {
		return nil, err
	}
	return cmd.rec, nil
}

// Exists reports whether the record of key exists.
func (c *Client) Exists(ctx context.Context, p *Policy, key Key) (bool, error) {
	cmd := command{kind: kindExists, key: key}
	if err := c.execute(ctx, readPolicy(p), &cmd); err != nil {
		return false, err
	}
	return cmd.found, nil
}

// Put writes bins to the record of key, as p says: with p's
// RecordExistsAction (create-only, update-only, replace, ...), generation
// check and TTL (Expiration). A nil policy means NewWritePolicy(0, 0).
func (c *Client) Put(ctx context.Context, p *WritePolicy, key Key, bins BinMap) error {
	return c.writeBins(ctx, kindPut, p, key, bins)
}

// Add adds the integer value of every bin of bins to the record's bin of
// that name (a missing bin counts as 0; a missing record is created),
// atomically on the server.
func (c *Client) Add(ctx context.Context, p *WritePolicy, key Key, bins BinMap) error {
	return c.writeBins(ctx, kindAdd, p, key, bins)
}

// writeBins runs a Put or an Add.
func (c *Client) writeBins(ctx context.Context, k kind, p *WritePolicy, key Key, bins BinMap) error {
	if len(bins) == 0 {
		return fmt.Errorf("record: %s %s without bins: %w", k, keyString(&key), ErrInvalid)
	}
	wp := writePolicy(p)
	cmd := command{kind: k, key: key, bins: bins, wp: wp}
	return c.execute(ctx, &wp.Policy, &cmd)
}

// Delete deletes the record of key and reports whether it existed.
func (c *Client) Delete(ctx context.Context, p *WritePolicy, key Key) (bool, error) {
	wp := writePolicy(p)
	cmd := command{kind: kindDelete, key: key, wp: wp}
	if err := c.execute(ctx, &wp.Policy, &cmd); err != nil {
		return false, err
	}
	return cmd.found, nil
}

// Touch resets the record's TTL to p.Expiration and bumps its generation.
// A record that does not exist gives an error wrapping ErrKeyNotFound.
func (c *Client) Touch(ctx context.Context, p *WritePolicy, key Key) error {
	wp := writePolicy(p)
	cmd := command{kind: kindTouch, key: key, wp: wp}
	return c.execute(ctx, &wp.Policy, &cmd)
}
