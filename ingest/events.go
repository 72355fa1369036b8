package ingest

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/immeter/immeter/schemas"
)

// NewID returns a random 128-bit event id in hex (32 characters).
func NewID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand.Read crashes the program instead)
	return hex.EncodeToString(b[:])
}

// NewLogin returns a login of user to app at the given time, with a new id.
// Set Platform on the result to say from where.
func NewLogin(app uint32, user string, at time.Time) schemas.Event {
	return schemas.Event{ID: NewID(), Type: schemas.Login, App: app, Time: at, User: user}
}

// NewMessage returns count messages sent by user on channel (c2c, group,
// community, live), with a new id.
func NewMessage(app uint32, user, channel string, count int64, at time.Time) schemas.Event {
	return schemas.Event{ID: NewID(), Type: schemas.Message, App: app, Time: at, User: user, Channel: channel, Count: count}
}

// NewGroupCreate returns the creation of group of groupType (Work, Public,
// Meeting, Community, AVChatRoom), with a new id. Set User for its owner.
func NewGroupCreate(app uint32, group, groupType string, at time.Time) schemas.Event {
	return schemas.Event{ID: NewID(), Type: schemas.Group, App: app, Time: at, Op: "create", Group: group, GroupType: groupType}
}

// NewGroupDissolve returns the dissolution of group, with a new id.
func NewGroupDissolve(app uint32, group, groupType string, at time.Time) schemas.Event {
	return schemas.Event{ID: NewID(), Type: schemas.Group, App: app, Time: at, Op: "dissolve", Group: group, GroupType: groupType}
}

// NewCall returns a call of user lasting seconds with media (audio, video),
// with a new id. Set CallID to tie the event to a call.
func NewCall(app uint32, user, media string, seconds int64, at time.Time) schemas.Event {
	return schemas.Event{ID: NewID(), Type: schemas.Call, App: app, Time: at, User: user, Media: media, Seconds: seconds}
}

// NewPlan returns a change of app's edition (developer, standard, premium),
// with a new id.
func NewPlan(app uint32, edition string, at time.Time) schemas.Event {
	return schemas.Event{ID: NewID(), Type: schemas.Plan, App: app, Time: at, Edition: edition}
}
