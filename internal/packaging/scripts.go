package packaging

import (
	"strings"
)

// Scripts returns the maintainer scripts of part's package in format, by
// Debian's names: postinst, prerm and postrm (an .rpm runs them as %post,
// %preun and %postun; a tarball carries them for the administrator to
// run). stateDir is the part's state directory ("" for none).
//
// postinst creates the part's system user with systemd-sysusers when
// sysusers is set (and the tool is there), creates stateDir (mode 0700) and, when systemd is running,
// reloads it and enables and starts the service on a first install (or a
// new install after a removal), or restarts it on an upgrade if it was
// running. prerm stops and disables
// the service when the package is removed (not when it is upgraded).
// postrm reloads systemd after a removal and, on a .deb's purge, removes
// stateDir; a removal leaves it.
//
// The .deb's scripts honour DPKG_ROOT (dpkg --root with
// --force-script-chrootless): their paths are under it, and they leave
// the running system's services alone.
func Scripts(part, format, stateDir string, sysusers bool) map[string]string {
	l := LayoutOf(part)
	r := strings.NewReplacer("@UNIT@", l.UnitName, "@STATE@", stateDir, "@NAME@", l.Name, "@SYSUSERS@", l.Sysusers,
		"@MARK@", removedMark(part))
	var post, prerm, postrm string
	if format == "rpm" {
		post, prerm, postrm = rpmPost, rpmPreun, rpmPostun
	} else {
		post, prerm, postrm = debPostinst, debPrerm, debPostrm
	}
	if stateDir == "" {
		post = strip(post, "@STATE@")
		postrm = strip(postrm, "@STATE@")
	}
	if !sysusers {
		post = strip(post, "@SYSUSERS@")
	}
	return map[string]string{
		"postinst": r.Replace(post),
		"prerm":    r.Replace(prerm),
		"postrm":   r.Replace(postrm),
	}
}

// removedMark is the file a .deb's prerm leaves when it disables the
// service on removal, so that installing the package again enables it
// again (dpkg tells that postinst the old version, as for an upgrade).
func removedMark(part string) string { return "/etc/vigil/." + LayoutOf(part).Name + ".removed" }

// strip drops the lines that hold mark: those handling the state
// directory or the system user, when the package has none. Each such
// line is a whole command, so the script stays valid without it.
func strip(s, mark string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, mark) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// systemd is running: the test that systemd's own tools and
// debhelper's scripts use.
const debPostinst = `#!/bin/sh
# postinst of @NAME@, written by vigil package.
set -e
root="${DPKG_ROOT:-}"
case "$1" in
configure)
	if command -v systemd-sysusers >/dev/null; then systemd-sysusers ${root:+--root="$root"} "$root@SYSUSERS@"; fi
	mkdir -p "$root@STATE@"
	chmod 0700 "$root@STATE@"
	if [ -z "$root" ] && [ -d /run/systemd/system ]; then
		systemctl daemon-reload
		# A first install, or one after a removal (prerm left the mark):
		# enable and start. An upgrade: restart only if running, so that
		# a service the administrator stopped or disabled stays so.
		if [ -z "$2" ] || [ -e "@MARK@" ]; then
			rm -f "@MARK@"
			systemctl enable --now @UNIT@
		else
			systemctl try-restart @UNIT@
		fi
	fi
	;;
abort-upgrade|abort-remove|abort-deconfigure)
	;;
*)
	echo "postinst called with unknown argument '$1'" >&2
	exit 1
	;;
esac
exit 0
`

const debPrerm = `#!/bin/sh
# prerm of @NAME@, written by vigil package.
set -e
root="${DPKG_ROOT:-}"
case "$1" in
remove|deconfigure)
	if [ -z "$root" ] && [ -d /run/systemd/system ]; then
		systemctl disable --now @UNIT@ || true
		mkdir -p /etc/vigil
		touch "@MARK@"
	fi
	;;
upgrade|failed-upgrade)
	;;
*)
	echo "prerm called with unknown argument '$1'" >&2
	exit 1
	;;
esac
exit 0
`

const debPostrm = `#!/bin/sh
# postrm of @NAME@, written by vigil package.
set -e
root="${DPKG_ROOT:-}"
case "$1" in
remove|purge)
	if [ -z "$root" ] && [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	if [ "$1" = purge ]; then rm -rf "$root@STATE@"; fi
	if [ "$1" = purge ]; then rm -f "$root@MARK@"; rmdir "$root/etc/vigil" 2>/dev/null || true; fi
	;;
upgrade|failed-upgrade|abort-install|abort-upgrade|disappear)
	;;
*)
	echo "postrm called with unknown argument '$1'" >&2
	exit 1
	;;
esac
exit 0
`

// An rpm passes the number of the package's versions installed once the
// transaction is done: 1 on a first install, 2 on an upgrade, 0 in the
// %preun and %postun of an erase.
const rpmPost = `#!/bin/sh
# %post of @NAME@, written by vigil package.
if command -v systemd-sysusers >/dev/null; then systemd-sysusers "@SYSUSERS@"; fi
mkdir -p "@STATE@"
chmod 0700 "@STATE@"
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	if [ "$1" = 1 ]; then
		systemctl enable --now @UNIT@
	else
		systemctl try-restart @UNIT@
	fi
fi
exit 0
`

const rpmPreun = `#!/bin/sh
# %preun of @NAME@, written by vigil package.
if [ "$1" = 0 ] && [ -d /run/systemd/system ]; then
	systemctl disable --now @UNIT@ || true
fi
exit 0
`

const rpmPostun = `#!/bin/sh
# %postun of @NAME@, written by vigil package. An rpm has no purge: the
# state directory (@STATE@) is left for the administrator.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
`
