package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progressBar draws "verb [=====>    ] 42%  1.2 GiB/3.0 GiB  850 MiB/s  3s left"
// on stderr when stderr is a terminal, at most ten times a second; it is
// silent otherwise (logs and pipes get the final summary only).
type progressBar struct {
	w     io.Writer
	verb  string
	on    bool
	start time.Time
	mu    sync.Mutex
	last  time.Time
	drawn bool
}

func newProgressBar(w io.Writer, verb string) *progressBar {
	f, ok := w.(*os.File)
	return &progressBar{w: w, verb: verb, on: ok && term.IsTerminal(int(f.Fd())), start: time.Now()}
}

// update is a backup.Options.Progress callback.
func (p *progressBar) update(done, total uint64) {
	if !p.on || total == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last = now
	fmt.Fprint(p.w, "\r"+renderBar(p.verb, done, total, now.Sub(p.start)))
	p.drawn = true
}

// finish ends the bar's line.
func (p *progressBar) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

// renderBar formats one state of the bar.
func renderBar(verb string, done, total uint64, elapsed time.Duration) string {
	const width = 30
	frac := float64(done) / float64(total)
	fill := int(frac * width)
	bar := strings.Repeat("=", fill)
	if fill < width {
		bar += ">" + strings.Repeat(" ", width-fill-1)
	}
	rate := float64(done) / max(elapsed.Seconds(), 1e-3)
	left := "?"
	if rate > 0 {
		left = (time.Duration(float64(total-done)/rate*1e9) * time.Nanosecond).Round(time.Second).String()
	}
	return fmt.Sprintf("%s [%s] %3.0f%%  %s/%s  %s/s  %s left ", verb, bar, frac*100,
		humanBytes(done), humanBytes(total), humanBytes(uint64(rate)), left)
}
