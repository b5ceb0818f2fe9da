package doctor

import "time"

// DefaultMulticastWait is how long the multicast check listens for a
// signed datagram when Config.Wait is zero: the server's default beacon
// interval (30 s) and a margin.
const DefaultMulticastWait = 35 * time.Second
