package auth

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// cheap are parameters that keep the tests quick; the format and the
// algorithm are those of DefaultParams.
var cheap = Params{Time: 1, Memory: 64, Threads: 1}

func TestPasswordHash(t *testing.T) {
	t.Parallel()
	h, err := HashPassword("correct horse battery", DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=2,p=2$") {
		t.Errorf("hash %q does not carry its parameters", h)
	}
	if h2, _ := HashPassword("correct horse battery", DefaultParams); h2 == h {
		t.Error("two hashes of one password are equal: no salt")
	}
	if ok, stale, err := VerifyPassword(h, "correct horse battery", DefaultParams); !ok || stale || err != nil {
		t.Errorf("Verify(right) = %v, %v, %v", ok, stale, err)
	}
	if ok, _, err := VerifyPassword(h, "correct horse batterx", DefaultParams); ok || err != nil {
		t.Errorf("Verify(wrong) = %v, %v", ok, err)
	}
	// Raised parameters: an older hash still verifies, and is stale.
	if ok, stale, err := VerifyPassword(h, "correct horse battery", Params{Time: 3, Memory: 64 * 1024, Threads: 2}); !ok || !stale || err != nil {
		t.Errorf("Verify with raised parameters = %v, %v, %v", ok, stale, err)
	}
	for _, bad := range []string{
		"", "plain", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5", // 4 GiB
		"$argon2id$v=19$m=64,t=0,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=64,t=1,p=1,x=2$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5",
		"$argon2id$v=19$m=64,t=1,p=1$!!$a2V5a2V5a2V5a2V5a2V5",
	} {
		if _, _, err := VerifyPassword(bad, "x", cheap); err == nil {
			t.Errorf("Verify accepted the hash %q", bad)
		}
	}
}

func TestPasswordPolicy(t *testing.T) {
	t.Parallel()
	for pw, ok := range map[string]bool{
		"":                              false,
		"elevenchars":                   false,
		"twelve chars":                  true,
		"ééééééééééé":                   false, // 11 characters, 22 bytes
		"éééééééééééé":                  true,
		strings.Repeat("x", 1024):       true,
		strings.Repeat("x", 1025):       false,
		"not utf-8 at all \xff\xfe\xfd": false,
	} {
		err := CheckPassword(pw)
		if (err == nil) != ok {
			t.Errorf("CheckPassword(%q) = %v", pw, err)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckPassword(%q) = %v, not ErrInvalid", pw, err)
		}
	}
}

func TestToken(t *testing.T) {
	t.Parallel()
	a, ha := NewToken()
	b, _ := NewToken()
	if a == b || !strings.HasPrefix(a, TokenPrefix) || len(a) != 47 || !IsUserToken(a) {
		t.Errorf("tokens %q, %q", a, b)
	}
	if string(HashToken(a)) != string(ha) || len(ha) != 32 {
		t.Error("the hash returned is not HashToken's")
	}
	for _, s := range []string{"", TokenPrefix, a[:46], a + "A", "xyz_" + a[4:], strings.Repeat("ab", 32)} {
		if IsUserToken(s) {
			t.Errorf("IsUserToken(%q)", s)
		}
	}
}

// TestThrottle runs in a synctest bubble: its clock moves only when every
// goroutine waits, so the delays are checked exactly, without sleeping
// for real.
func TestThrottle(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		th := NewThrottle(ThrottleConfig{Free: 3, Base: time.Second, Max: 8 * time.Second, Forget: time.Hour, Entries: 4})
		for range 3 {
			if w := th.Wait("ann", "10.0.0.1"); w != 0 {
				t.Fatalf("wait %v within the free failures", w)
			}
			th.Fail("ann", "10.0.0.1")
		}
		// Past the free failures: 1 s, 2 s, 4 s, 8 s, 8 s.
		for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second} {
			th.Fail("ann", "10.0.0.1")
			if w := th.Wait("ann", "10.0.0.1"); w != want {
				t.Fatalf("wait %v, want %v", w, want)
			}
			// The same name from elsewhere, and another name from the
			// same address, wait too.
			if th.Wait("ann", "10.0.0.2") != want || th.Wait("bob", "10.0.0.1") != want {
				t.Fatal("the delay is not per name and per address")
			}
			time.Sleep(want - time.Millisecond)
			if th.Wait("ann", "") != time.Millisecond {
				t.Fatal("the delay ended early")
			}
			time.Sleep(time.Millisecond)
			if w := th.Wait("ann", "10.0.0.1"); w != 0 {
				t.Fatalf("still waiting %v after the delay", w)
			}
		}
		// A success clears the name, not the address.
		th.Succeed("ann")
		th.Fail("ann", "10.0.0.3")
		if w := th.Wait("ann", "10.0.0.3"); w != 0 {
			t.Errorf("after a success, one failure waits %v", w)
		}
		th.Fail("carl", "10.0.0.1")
		if w := th.Wait("carl", ""); w != 0 {
			t.Errorf("a new name waits %v for its first failure", w)
		}
		if w := th.Wait("", "10.0.0.1"); w != 8*time.Second {
			t.Errorf("the address waits %v after one more failure, want 8s", w)
		}
		// Forgotten after an hour without failures.
		time.Sleep(time.Hour)
		th.Fail("", "10.0.0.1")
		if w := th.Wait("", "10.0.0.1"); w != 0 {
			t.Errorf("an address is not forgotten: %v", w)
		}
		// Bounded: no more than Entries names, the oldest going first.
		for i := range 10 {
			time.Sleep(time.Second)
			th.Fail(string(rune('a'+i)), "")
		}
		if u, _ := th.Len(); u != 4 {
			t.Errorf("%d names remembered, want at most 4", u)
		}
	})
}
