// Package browsertest starts the headless Chromium that relay's browser
// tests drive (Debian's chromium, which deploy/test.sh installs).
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/chromedp/chromedp"
)

// Chromium finds the browser: $RELAY_CHROMIUM, else Debian's chromium (or
// another Chrome) on $PATH.
func Chromium() (string, error) {
	if p := os.Getenv("RELAY_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("chromium not found: the browser tests need it. Run them with ./deploy/test.sh, " +
		"which installs it from Debian's packages (apt-get install chromium), or set RELAY_CHROMIUM to a Chrome binary")
}

// Start starts a headless Chromium and returns a chromedp context for it
// and the function that stops it.
func Start() (context.Context, context.CancelFunc, error) {
	path, err := Chromium()
	if err != nil {
		return nil, nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // the tests may run as root, where Chromium's sandbox refuses to start
		chromedp.WindowSize(1280, 800),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	stop := func() { cancelCtx(); cancelAlloc() }
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		stop()
		return nil, nil, fmt.Errorf("start %s: %w", path, err)
	}
	return ctx, stop, nil
}
