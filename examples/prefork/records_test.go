package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// seedPost is the seed's POST answer for myTestKey, digest bytes included.
const seedPost = `{"ns":"test","set":"demo","key":"myTestKey","digest":{"type":"Buffer","data":[149,186,200,254,138,5,9,52,115,70,1,194,131,184,51,95,232,241,179,74]}}`

// do sends one request and returns the status and the body.
func (pf *prefork) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, pf.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := pf.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", method, path, err, pf.stderr.String())
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, string(b)
}

// transcript runs the seed's three curl commands on key k (GET 404, POST
// 200, GET 200 with the bins) and a DELETE, and checks the answers; the
// POST answer is compared with wantPost when not empty.
func (pf *prefork) transcript(t *testing.T, k, wantPost string) {
	t.Helper()
	if code, body := pf.do(t, "GET", "/"+k, ""); code != http.StatusNotFound || body != "" {
		t.Fatalf("GET /%s before POST: %d %q, want 404 without a body", k, code, body)
	}
	code, body := pf.do(t, "POST", "/"+k, `{"x": 1234, "y": "abcd"}`)
	if code != http.StatusOK || (wantPost != "" && body != wantPost) || !strings.Contains(body, `"key":"`+k+`"`) {
		t.Fatalf("POST /%s: %d %s, want 200 %s", k, code, body, wantPost)
	}
	// Several GETs over new connections, so that other workers answer.
	for range 8 {
		if code, body := pf.do(t, "GET", "/"+k, ""); code != http.StatusOK || body != `{"x":1234,"y":"abcd"}` {
			t.Fatalf("GET /%s after POST: %d %q", k, code, body)
		}
	}
	if code, body := pf.do(t, "POST", "/"+k, `{"l": [1, 2.5, "s", {"m": true}]}`); code != http.StatusOK {
		t.Fatalf("second POST /%s: %d %s", k, code, body)
	}
	if code, body := pf.do(t, "GET", "/"+k, ""); code != http.StatusOK || body != `{"l":[1,2.5,"s",{"m":true}],"x":1234,"y":"abcd"}` {
		t.Fatalf("GET /%s after the second POST: %d %q", k, code, body)
	}
	if code, body := pf.do(t, "DELETE", "/"+k, ""); code != http.StatusOK {
		t.Fatalf("DELETE /%s: %d %s", k, code, body)
	}
	if code, _ := pf.do(t, "DELETE", "/"+k, ""); code != http.StatusNotFound {
		t.Fatalf("second DELETE /%s: %d, want 404", k, code)
	}
	if code, _ := pf.do(t, "GET", "/"+k, ""); code != http.StatusNotFound {
		t.Fatalf("GET /%s after DELETE: %d, want 404", k, code)
	}
	if code, body := pf.do(t, "POST", "/"+k, `[1]`); code != http.StatusBadRequest {
		t.Fatalf("POST /%s of an array: %d %s, want 400", k, code, body)
	}
}

// TestPreforkRecords runs the seed's transcript over four real worker
// processes, kills the tending worker, and runs it again: the records are
// read and written by every worker through the shared view, before and
// after the takeover. -v logs each request with its worker id.
func TestPreforkRecords(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a binary")
	}
	pf := startPrefork(t, "-workers", "4", "-v")
	waitFor(t, "the workers to route", pf.stderr, func() bool {
		_, err := getMaster(pf.client, pf.base)
		return err == nil
	})
	pf.transcript(t, "myTestKey", seedPost)
	out := pf.stderr.String()
	if logLine(out, "incoming GET request for /myTestKey on worker ") < 0 || logLine(out, "incoming POST request for /myTestKey on worker ") < 0 {
		t.Errorf("-v: no request log lines\n%s", out)
	}
	t.Logf("requests answered by workers %v", answeredBy(out))

	master, err := getMaster(pf.client, pf.base)
	if err != nil {
		t.Fatal(err)
	}
	killOwner(t, pf.client, pf.base, master, pf.stderr)
	pf.transcript(t, "myTestKey", seedPost)
	for i := range 5 {
		pf.transcript(t, fmt.Sprintf("after-kill-%d", i), "")
	}
	out = pf.interrupt(t)
	t.Logf("requests answered by workers %v over the whole test", answeredBy(out))
}

// answeredBy returns the ids of the workers that logged a request.
func answeredBy(log string) []string {
	var ids []string
	const mark = " request for /"
	for _, line := range strings.Split(log, "\n") {
		i := strings.Index(line, mark)
		if i < 0 {
			continue
		}
		_, id, ok := strings.Cut(line[i:], " on worker ")
		if f := strings.Fields(id); ok && len(f) > 0 {
			if id := strings.Trim(f[0], `"`); !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	return ids
}
