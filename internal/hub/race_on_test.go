//go:build race

package hub_test

// The race detector allocates on its own account, so allocation counts are
// only meaningful without it; deploy/test.sh runs those tests both ways.
const raceEnabled = true
