/* A small catalog shared by the unit tests and the fuzz target: one site with one map, one
 * survey holding every question kind, and an opt-in site. */
#ifndef JD_FIXTURE_CATALOG_H
#define JD_FIXTURE_CATALOG_H

static const char fixture_catalog_json[] =
    "{\"sites\":["
    "{\"id\":1,\"key\":\"site-key-0001\",\"origins\":[\"https://shop.example\"],"
    " \"consent_mode\":\"none-required\","
    " \"rules\":["
    "   {\"kind\":\"url\",\"match\":{\"op\":\"contains\",\"pattern\":\"/checkout\"},"
    "    \"stage\":\"purchase\",\"touchpoint\":\"email\"},"
    "   {\"kind\":\"url\",\"match\":{\"op\":\"regex\",\"pattern\":\"/reviews?/[0-9]+$\"},"
    "    \"stage\":\"advocacy\"},"
    "   {\"kind\":\"utm\",\"match\":{\"source\":\"news\"},\"touchpoint\":\"website\"},"
    "   {\"kind\":\"url\",\"match\":{\"pattern\":\"/x\"},\"stage\":\"ghost\"},"
    "   {\"kind\":\"persona_attribute\",\"match\":{\"attribute\":\"kids\",\"value\":2},"
    "    \"persona\":\"parent\"},"
    "   {\"kind\":\"screener\",\"match\":{\"question\":\"q4\",\"equals\":\"a\"},"
    "    \"persona\":\"parent\",\"question_id\":4}],"
    " \"maps\":[{\"id\":10,\"personas\":{\"parent\":100},\"stages\":{\"purchase\":200,"
    "   \"advocacy\":201},\"touchpoints\":{\"website\":300,\"email\":301},"
    "   \"obstacles\":{\"price\":400,\"shipping\":401}}],"
    " \"surveys\":[{\"id\":20,\"map\":10,\"slug\":\"s\",\"title\":\"T\",\"questions\":["
    "   {\"id\":1,\"kind\":\"emotion\",\"stage_id\":200,\"touchpoint_id\":300},"
    "   {\"id\":2,\"kind\":\"nps\",\"stage_id\":201},"
    "   {\"id\":3,\"kind\":\"csat\"},"
    "   {\"id\":4,\"kind\":\"single_choice\",\"options\":[{\"value\":\"a\"},{\"value\":\"b\"}]},"
    "   {\"id\":5,\"kind\":\"multi_choice\",\"options\":[{\"value\":\"a\"},{\"value\":\"b\"}]},"
    "   {\"id\":6,\"kind\":\"obstacle\"},"
    "   {\"id\":7,\"kind\":\"text\"},"
    "   {\"id\":8,\"kind\":\"action\"},"
    "   {\"id\":9,\"kind\":\"goal\"}]}]},"
    "{\"id\":2,\"key\":\"site-key-0002\",\"origins\":[\"*\"],\"consent_mode\":\"opt-in\","
    " \"maps\":[],\"surveys\":[]}"
    "]}";

#endif
