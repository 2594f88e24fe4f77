package admin

import (
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestHashPassword: x/crypto's bcrypt accepts every hash HashPassword
// makes for its password and rejects it for another (the control), and
// the hash is the fixed-salt form Aerospike servers store.
func TestHashPassword(t *testing.T) {
	h, err := HashPassword("admin")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 60 || h[:29] != aerospikeSalt || bcrypt.CompareHashAndPassword([]byte(h), []byte("admin")) != nil {
		t.Fatalf("hash %q: want 60 characters under Aerospike's salt that x/crypto/bcrypt verifies", h)
	}
	// The algorithm at the lowest cost (the salt's cost field), over more
	// passwords: bcrypt at cost 10 takes tens of milliseconds each.
	for _, pw := range []string{"", "admin", "secret password with spaces", "ünïcödé", string(make([]byte, 100))} {
		h, err := bcryptHash([]byte(pw), "$2a$04$7EqJtq98hPqEX7fNZaFWoO")
		if err != nil {
			t.Fatal(err)
		}
		if err := bcrypt.CompareHashAndPassword([]byte(h), []byte(pw)); err != nil {
			t.Errorf("password %q: x/crypto/bcrypt rejects our hash %s: %v", pw, h, err)
		}
		if err := bcrypt.CompareHashAndPassword([]byte(h), []byte("x"+pw)); err == nil {
			t.Errorf("password %q: the hash also verifies another password", pw)
		}
	}
	if _, err := bcryptHash([]byte("x"), "$2a$10$short"); err == nil {
		t.Error("a short salt was accepted")
	}
}
