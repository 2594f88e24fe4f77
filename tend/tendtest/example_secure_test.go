package tendtest_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/shmkit/shmkit/tend/admin"
	"github.com/shmkit/shmkit/tend/info"
	"github.com/shmkit/shmkit/tend/tendtest"
)

// A production-like cluster: TLS-only nodes with certificates from the
// simulator's authority, security with one user, and racks. A client
// verifies the node's TLS name, logs in, and asks for its rack.
func ExampleNew_secure() {
	sim, err := tendtest.New(tendtest.Options{
		Nodes: 2,
		TLS:   &tendtest.TLSOptions{},
		Users: map[string]string{"app": "secret"},
		Racks: []int{1, 2},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sim.Close()
	pool, _ := sim.CertPool()
	auth, _ := admin.NewAuthenticator(admin.Credentials{Mode: admin.ModeInternal, User: "app", Password: "secret"})
	n := sim.Nodes()[1]
	ctx := context.Background()
	conn, err := info.DialTLS(ctx, n.TLSAddr, n.TLSName, info.Options{
		TLS: &tls.Config{RootCAs: pool},
		Auth: func(ctx context.Context, nc net.Conn, addr string) error {
			return auth.Auth(ctx, nc, addr, time.Second)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	r, err := conn.Request(ctx, "node", "rack-ids")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(n.TLSName, r["node"], r["rack-ids"])
	fmt.Println("logins:", sim.AuthStats(1).Logins)
	// Output:
	// node1.tendtest BB900020011AC42 test:2
	// logins: 1
}
