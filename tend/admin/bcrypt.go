package admin

import (
	"encoding/base64"
	"fmt"

	"golang.org/x/crypto/blowfish"
)

// aerospikeSalt is the fixed bcrypt salt (cost 10) with which Aerospike
// clients hash a password before sending it: the server stores the same
// hash, so the clear password never crosses the network.
const aerospikeSalt = "$2a$10$7EqJtq98hPqEX7fNZaFWoO"

// bcryptB64 is bcrypt's base64 alphabet (no padding).
var bcryptB64 = base64.NewEncoding("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789").WithPadding(base64.NoPadding)

// HashPassword returns the credential an Aerospike client sends for
// password: its bcrypt hash (cost 10) under the salt every Aerospike
// client uses, as a 60-character "$2a$10$…" string.
// golang.org/x/crypto/bcrypt verifies it (CompareHashAndPassword) but
// cannot make it, since it always draws a random salt; the Blowfish setup
// below is bcrypt's, on x/crypto's Blowfish.
func HashPassword(password string) (string, error) {
	return bcryptHash([]byte(password), aerospikeSalt)
}

// bcryptHash is bcrypt of password under a "$2a$NN$" + 22-character salt.
func bcryptHash(password []byte, salt string) (string, error) {
	if len(salt) != 29 || salt[:4] != "$2a$" || salt[6] != '$' {
		return "", fmt.Errorf("admin: bcrypt salt %q: want $2a$NN$ and 22 characters", salt)
	}
	cost := int(salt[4]-'0')*10 + int(salt[5]-'0')
	if cost < 4 || cost > 31 {
		return "", fmt.Errorf("admin: bcrypt cost %d out of range", cost)
	}
	csalt, err := bcryptB64.DecodeString(salt[7:])
	if err != nil || len(csalt) != 16 {
		return "", fmt.Errorf("admin: bcrypt salt %q does not decode to 16 bytes", salt[7:])
	}
	// The key is the password with its terminating NUL, at most 72 bytes.
	key := append(append([]byte{}, password...), 0)
	if len(key) > 72 {
		key = key[:72]
	}
	c, err := blowfish.NewSaltedCipher(key, csalt)
	if err != nil {
		return "", fmt.Errorf("admin: bcrypt: %w", err)
	}
	for range 1 << cost {
		blowfish.ExpandKey(key, c)
		blowfish.ExpandKey(csalt, c)
	}
	data := []byte("OrpheanBeholderScryDoubt")
	for i := 0; i < 24; i += 8 {
		for range 64 {
			c.Encrypt(data[i:i+8], data[i:i+8])
		}
	}
	return salt + bcryptB64.EncodeToString(data[:23]), nil
}
