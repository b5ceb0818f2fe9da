package mirror

import (
	"context"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/vigil-fleet/vigil/internal/repo"
	"github.com/vigil-fleet/vigil/internal/selfupdate"
)

// SelfUpdateCheck is what the self-update check found and did.
type SelfUpdateCheck struct {
	// Running is the running version (Config.Version).
	Running string `json:"running"`
	// Latest is the newest release for the platform ("" if none is
	// published), Target its target path.
	Latest string `json:"latest,omitempty"`
	Target string `json:"target,omitempty"`
	// Available reports that Latest is newer than Running (a build
	// without a release version, "devel", is older than every release).
	Available bool `json:"available"`
	// Updated reports that Executable now holds Latest; Previous is
	// where the replaced executable was kept.
	Updated    bool   `json:"updated"`
	Executable string `json:"executable,omitempty"`
	Previous   string `json:"previous,omitempty"`
	Error      string `json:"error,omitempty"`
}

// selfUpdateCheck looks for the newest release in targets (the state just
// published, or the local one) and, if asked, installs it.
func (m *Mirror) selfUpdateCheck(_ context.Context, targets map[string]*metadata.TargetFiles) *SelfUpdateCheck {
	c := &SelfUpdateCheck{Running: m.cfg.Version}
	path, latest, ok := repo.LatestRelease(targets, m.cfg.GOOS, m.cfg.GOARCH)
	if !ok {
		m.printf("Self-update: the repository has no Vigil release for %s/%s\n", m.cfg.GOOS, m.cfg.GOARCH)
		return c
	}
	c.Latest, c.Target = latest, path
	c.Available = repo.CompareReleaseVersions(latest, m.cfg.Version) > 0
	if !c.Available {
		m.printf("Self-update: running %s; the newest release is %s: up to date\n", m.cfg.Version, latest)
		return c
	}
	if m.cfg.SelfUpdateExe == "" {
		m.printf("Self-update: running %s; %s is available (%s): run with -self-update to install it\n", m.cfg.Version, latest, path)
		return c
	}
	tf := targets[path]
	src, err := m.targetLocalPath(path, tf)
	if err == nil {
		c.Executable = m.cfg.SelfUpdateExe
		c.Previous, err = selfupdate.Replace(m.cfg.SelfUpdateExe, src, tf, m.cfg.GOOS, m.cfg.GOARCH)
	}
	if err != nil {
		c.Error = err.Error()
		m.printf("Self-update to %s failed: %v\n", latest, err)
		return c
	}
	c.Updated = true
	m.printf("Self-update: replaced %s with %s (the previous executable is %s); it takes effect at the next start\n", c.Executable, latest, c.Previous)
	return c
}
