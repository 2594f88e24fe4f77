package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestUsageErrors(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), nil, &out, &errb); code != exitUsage {
		t.Errorf("no verb: exit %d, want %d", code, exitUsage)
	}
	errb.Reset()
	if code := run(context.Background(), []string{"frobnicate"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), `no verb "frobnicate"`) {
		t.Errorf("unknown verb: exit %d, stderr %q", code, errb.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"help"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "exit codes") {
		t.Errorf("help: exit %d, stdout %q", code, out.String())
	}
}

func TestEveryVerbHasHelp(t *testing.T) {
	for _, v := range verbs() {
		if v.summary == "" || v.help == "" || v.run == nil {
			t.Errorf("verb %q lacks a summary, help or run", v.name)
		}
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"help", v.name}, &out, &errb); code != exitOK || !strings.Contains(out.String(), v.name) {
			t.Errorf("help %s: exit %d, stdout %q", v.name, code, out.String())
		}
	}
}
