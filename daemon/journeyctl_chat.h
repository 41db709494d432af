/* journeyctl's live-chat commands (issue 6): `journeyctl transcripts` exports chat transcripts and
 * `journeyctl agent add|passwd|disable|enable|list` manages the agent accounts of a site. They
 * live in journeyctl_chat.c; journeyctl.c hands over the command line when its first word is one
 * of theirs and lists them in its --help. */
#ifndef JD_JOURNEYCTL_CHAT_H
#define JD_JOURNEYCTL_CHAT_H

#include <stdbool.h>
#include <stdio.h>

/* True when group ("transcripts", "agent") is a chat command. */
bool jd_ctl_chat_owns(const char *group);

/* Writes the chat commands' lines of `journeyctl --help` ("  NAME  SYNOPSIS"). */
void jd_ctl_chat_usage(FILE *f);

/* Runs a chat command. argv holds the words after group (a subcommand for "agent", then options);
 * db_url is --database-url given before the command (NULL: the command's own --database-url or
 * JOURNEYD_DATABASE_URL); actor is what the audit log records. Returns the exit status: 0, 1 on
 * an error, 2 on a usage error (each error is one line "journeyctl: ..." on stderr). */
int jd_ctl_chat_main(const char *group, int argc, char **argv, const char *db_url,
                     const char *actor);

#endif
