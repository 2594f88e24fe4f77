package fuzz

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/shmkit/shmkit/tend/admin"
)

// FuzzAdminMessage feeds hostile bytes to the admin-protocol reader that
// a login reads its reply with: it must return a message whose fields lie
// inside what it read, or an error (ErrProtocol or a short read), never
// panic; and a message it accepts re-encodes to the bytes it consumed.
func FuzzAdminMessage(f *testing.F) {
	login := &admin.Message{Command: admin.CmdLogin, Fields: []admin.Field{
		{ID: admin.FieldUser, Data: []byte("admin")}, {ID: admin.FieldCredential, Data: []byte("$2a$10$7EqJtq98hPqEX7fNZaFWoOhAoJM8.Ue1/1YQw4Nzwhu0CpI5q3lGi")}}}
	reply := &admin.Message{Fields: []admin.Field{{ID: admin.FieldSessionToken, Data: bytes.Repeat([]byte{7}, 32)},
		{ID: admin.FieldSessionTTL, Data: []byte{0, 0, 0x0e, 0x10}}}}
	refused := &admin.Message{Result: admin.ResultInvalidPassword}
	for _, m := range []*admin.Message{login, reply, refused} {
		b := m.Append(nil)
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		m, err := admin.ReadMessage(r)
		if err != nil {
			if m != nil {
				t.Fatal("a message with an error")
			}
			if !errors.Is(err, admin.ErrProtocol) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		used := len(b) - r.Len()
		if enc := m.Append(nil); len(enc) > used {
			t.Fatalf("message of %d encoded bytes read from %d", len(enc), used)
		}
	})
}
