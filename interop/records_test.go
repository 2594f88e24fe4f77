package interop

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	as "github.com/aerospike/aerospike-client-go/v8"

	"github.com/shmkit/shmkit/partmap"
	"github.com/shmkit/shmkit/record"
	"github.com/shmkit/shmkit/tend"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// recordsConverged waits until the view has a master for every partition
// of ns.
func recordsConverged(t *testing.T, c *tend.Cluster, ns string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for pid := uint32(0); pid < partmap.Partitions; {
		d, _ := partmap.DigestForPartition(pid)
		if _, err := c.Master(ns, d); err == nil {
			pid++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("view of %s not converged at partition %d", ns, pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// particleCases are bin values of every particle type the record client
// writes, lists and maps nested in each other included.
func particleCases() []struct {
	name string
	v    any
} {
	return []struct {
		name string
		v    any
	}{
		{"int", int64(-1234567890123)},
		{"int max", int64(math.MaxInt64)},
		{"float", 3.25},
		{"string", "abcd é"},
		{"empty string", ""},
		{"bytes", []byte{0, 1, 2, 255}},
		{"bool true", true},
		{"bool false", false},
		{"list", []any{int64(1), "two", 3.5, []byte{4}, true, []any{int64(5)}, map[any]any{"six": int64(6)}}},
		{"empty list", []any{}},
		{"map", map[any]any{"a": int64(1), int64(2): "b", "c": []any{"d", int64(-7)}, "e": map[any]any{"f": 1.5}, "g": []byte("h")}},
		{"empty map", map[any]any{}},
	}
}

// normalize maps the Go types the two clients give for the same value to
// one: every integer to int64, every list to []any, every map to
// map[any]any.
func normalize(x any) any {
	v := reflect.ValueOf(x)
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int()
	case reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return int64(v.Uint())
	case reflect.Slice:
		if b, ok := x.([]byte); ok {
			return b
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = normalize(v.Index(i).Interface())
		}
		return out
	case reflect.Map:
		out := map[any]any{}
		for it := v.MapRange(); it.Next(); {
			out[normalize(it.Key().Interface())] = normalize(it.Value().Interface())
		}
		return out
	}
	return x
}

func equalValues(a, b any) bool {
	a, b = normalize(a), normalize(b)
	if ab, ok := a.([]byte); ok {
		bb, ok := b.([]byte)
		return ok && bytes.Equal(ab, bb)
	}
	return reflect.DeepEqual(a, b)
}

// recordsSetup starts a three-node RF 2 cluster, the official client and
// shmkit's record client on a shared view of it.
func recordsSetup(t *testing.T) (*as.Client, *record.Client) {
	sim, err := tendtest.New(tendtest.Options{Nodes: 3, Namespaces: []tendtest.NamespaceSpec{{Name: "test", ReplicationFactor: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	official := newClient(t, sim.Seeds()[0], "")
	cl := openTend(t, testKey(t), sim.Seeds()[0])
	recordsConverged(t, cl, "test")
	rc, err := record.NewClient(cl, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return official, rc
}

// TestRecordsOfficialToShmkit writes a record of every particle type
// with the official client and reads it with shmkit's: equal bins, the
// same digest, generation and existence.
func TestRecordsOfficialToShmkit(t *testing.T) {
	official, rc := recordsSetup(t)
	ctx := context.Background()
	for i, tc := range particleCases() {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("official-%d", i)
			ak, aerr := as.NewKey("test", "demo", name)
			if aerr != nil {
				t.Fatal(aerr)
			}
			if aerr := official.Put(nil, ak, as.BinMap{"v": tc.v, "n": i}); aerr != nil {
				t.Fatalf("official put: %v", aerr)
			}
			k, err := record.NewKey("test", "demo", name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(k.Digest[:], ak.Digest()) {
				t.Fatalf("digest %x, official %x", k.Digest, ak.Digest())
			}
			rec, err := rc.Get(ctx, nil, k)
			if err != nil {
				t.Fatalf("shmkit get: %v", err)
			}
			if !equalValues(rec.Bins["v"], tc.v) || rec.Bins["n"] != int64(i) || len(rec.Bins) != 2 {
				t.Fatalf("shmkit read %#v, official wrote %#v", rec.Bins, tc.v)
			}
			arec, aerr := official.Get(nil, ak)
			if aerr != nil || arec.Generation != rec.Generation {
				t.Fatalf("generation: official %v (%v), shmkit %d", arec, aerr, rec.Generation)
			}
			named, err := rc.Get(ctx, nil, k, "n")
			if err != nil || len(named.Bins) != 1 || named.Bins["n"] != int64(i) {
				t.Fatalf("named bin: %v %v", named, err)
			}
			if ok, err := rc.Exists(ctx, nil, k); !ok || err != nil {
				t.Fatalf("exists: %v %v", ok, err)
			}
		})
	}
}

// TestRecordsShmkitToOfficial writes a record of every particle type
// with shmkit's client and reads it with the official one; then Add,
// Touch and Delete by shmkit are seen by the official client.
func TestRecordsShmkitToOfficial(t *testing.T) {
	official, rc := recordsSetup(t)
	ctx := context.Background()
	for i, tc := range particleCases() {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("shmkit-%d", i)
			k, err := record.NewKey("test", "demo", name)
			if err != nil {
				t.Fatal(err)
			}
			if err := rc.Put(ctx, nil, k, record.BinMap{"v": tc.v, "n": i}); err != nil {
				t.Fatalf("shmkit put: %v", err)
			}
			ak, _ := as.NewKey("test", "demo", name)
			arec, aerr := official.Get(nil, ak)
			if aerr != nil {
				t.Fatalf("official get: %v", aerr)
			}
			if !equalValues(arec.Bins["v"], tc.v) || !equalValues(arec.Bins["n"], i) || len(arec.Bins) != 2 {
				t.Fatalf("official read %#v, shmkit wrote %#v", arec.Bins, tc.v)
			}
		})
	}
	k, _ := record.NewKey("test", "demo", 77)
	ak, _ := as.NewKey("test", "demo", 77)
	if err := rc.Add(ctx, nil, k, record.BinMap{"c": 5}); err != nil {
		t.Fatal(err)
	}
	if err := rc.Add(ctx, nil, k, record.BinMap{"c": -2}); err != nil {
		t.Fatal(err)
	}
	arec, aerr := official.Get(nil, ak)
	if aerr != nil || !equalValues(arec.Bins["c"], 3) || arec.Generation != 2 {
		t.Fatalf("official after two adds: %v %v", arec, aerr)
	}
	if err := rc.Touch(ctx, nil, k); err != nil {
		t.Fatal(err)
	}
	if arec, aerr = official.Get(nil, ak); aerr != nil || arec.Generation != 3 {
		t.Fatalf("official after touch: %v %v", arec, aerr)
	}
	if existed, err := rc.Delete(ctx, nil, k); !existed || err != nil {
		t.Fatalf("delete: %v %v", existed, err)
	}
	if exists, aerr := official.Exists(nil, ak); exists || aerr != nil {
		t.Fatalf("official exists after shmkit delete: %v %v", exists, aerr)
	}
}

// TestRecordsEqualValuesControl is the negative control of the
// comparisons above: values that differ in content or in kind (a list
// read back as bytes, a map's value as a string) are told apart.
func TestRecordsEqualValuesControl(t *testing.T) {
	for _, c := range [][2]any{
		{[]any{int64(1)}, []any{int64(2)}},
		{[]any{int64(1)}, []byte{1}},
		{map[any]any{"a": int64(1)}, map[any]any{"a": "1"}},
		{map[any]any{"a": int64(1)}, map[any]any{"b": int64(1)}},
		{3.25, int64(3)},
		{[]byte{1}, "\x01"},
		{true, int64(1)},
	} {
		if equalValues(c[0], c[1]) {
			t.Errorf("%#v and %#v compare equal", c[0], c[1])
		}
	}
	if !equalValues([]any{1, map[string]int{"a": 2}}, []any{int64(1), map[any]any{"a": int64(2)}}) {
		t.Error("the same list in two clients' Go types compares unequal")
	}
}
