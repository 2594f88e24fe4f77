package main

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"time"

	"github.com/shmkit/shmkit/examples/kvstore/storage"
	"github.com/shmkit/shmkit/partmap"
)

// LoadSet is the set of the records -load writes; their keys are
// "key-<i>" for i from 0 to N-1, their bins {"i":<i>,"s":"<filler>"}
// (data-in-index namespaces: the integer i).
const LoadSet = "demo"

// LoadKey returns the key of the i-th loaded record.
func LoadKey(i int) string { return "key-" + strconv.Itoa(i) }

// bulkLoad appends o.load records to the log of every namespace, directly
// (no index: the next server start rebuilds it, cold, because the log's
// identity changed).
func bulkLoad(o *options, log *slog.Logger) error {
	for i, name := range o.namespaces {
		dir := filepath.Join(o.dir, name)
		st, err := storage.Open(dir, storageOptions(o, nil, log.With("ns", name)))
		if err != nil {
			return fmt.Errorf("namespace %s: open log %s: %w (stop the kvstore serving it first)", name, dir, err)
		}
		t := time.Now()
		dii := o.dii[name]
		filler := make([]byte, o.loadBinBytes)
		for j := range filler {
			filler[j] = 'a' + byte(j%26)
		}
		nsb, setb := []byte(name), []byte(LoadSet)
		var key, bins []byte
		now := uint64(time.Now().UnixMilli())
		err = st.BulkLoad(o.load, func(j int, rec *storage.Record) error {
			key = append(key[:0], "key-"...)
			key = strconv.AppendInt(key, int64(j), 10)
			if dii {
				bins = binary.LittleEndian.AppendUint64(bins[:0], uint64(j))
			} else {
				bins = append(bins[:0], `{"i":`...)
				bins = strconv.AppendInt(bins, int64(j), 10)
				bins = append(bins, `,"s":"`...)
				bins = append(bins, filler...)
				bins = append(bins, `"}`...)
			}
			*rec = storage.Record{Namespace: nsb, Digest: partmap.StringKeyDigest(LoadSet, string(key)), Set: setb, Key: key,
				Generation: 1, LastUpdate: now, Bins: bins}
			return nil
		}, nil)
		if err != nil {
			st.Close()
			return fmt.Errorf("namespace %s: bulk load: %w", name, err)
		}
		id := st.Identity()
		if err := st.Close(); err != nil {
			return fmt.Errorf("namespace %s: close log: %w", name, err)
		}
		log.Info("bulk load done", "ns", name, "num", i, "records", o.load, "storage", id.String(), "duration", time.Since(t))
	}
	return nil
}
