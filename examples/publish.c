/* Seed 001 in C: on a click of 完成「全量发布」, run the business logic, take the
 * card, replace its zh_cn body with "已完成" and answer it. Run it, then:
 *   build/cardgate trigger --url http://127.0.0.1:8081/webhook/card */
#include <cardgate.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

static const char *stored_card = /* what get_record("message_card", id) returns */
    "{\"i18n_elements\":{\"zh_cn\":[{\"tag\":\"action\",\"actions\":[{\"tag\":\"button\","
    "\"text\":{\"tag\":\"plain_text\",\"content\":\"完成「全量发布」\"},\"type\":\"primary\","
    "\"value\":{\"button_type\":\"public_publish\",\"button_id\":\"1626958617426\"}}]}]}}";

static int custom_business_logic(const char *open_id) { return open_id ? 0 : -1; }

static void on_publish(const cg_action *a, cg_responder *r, void *ud) {
  (void)ud;
  if (custom_business_logic(a->open_id) != 0) { cg_respond(r, NULL); return; }
  json_t *card = json_loads(stored_card, 0, NULL);
  json_object_set_new(json_object_get(card, "i18n_elements"), "zh_cn",
                      json_pack("[{s:s, s:[{s:b, s:{s:s, s:s}}]}]", "tag", "div", "fields", "is_short", 0,
                                "text", "tag", "lark_md", "content", "已完成"));
  char *text = json_dumps(card, JSON_COMPACT);
  int err;
  cg_respond(r, cg_reply_card(text, &err)); /* takes the reply; NULL = keep */
  free(text);
  json_decref(card);
}

int main(void) {
  uv_loop_t *loop = uv_default_loop();
  cg_app_options o;
  cg_app_options_init(&o);
  o.lark_verification_token = getenv("LARK_VERIFICATION_TOKEN");
  o.lark_encrypt_key = getenv("LARK_ENCRYPT_KEY");
  int err;
  cg_app *app = cg_app_new(loop, &o, &err);
  cg_server_options so;
  cg_server_options_init(&so);
  so.port = 8081;
  cg_server *srv = app ? cg_server_new(app, &so, &err) : NULL;
  if (!srv || cg_app_route(app, "value.button_type == \"public_publish\"", on_publish, NULL) != 0 ||
      (err = cg_server_listen(srv)) != 0) {
    fprintf(stderr, "publish example: %s\n", cg_strerror(err));
    return 1;
  }
  printf("listening on http://127.0.0.1:%d/webhook/card\n", cg_server_port(srv));
  return uv_run(loop, UV_RUN_DEFAULT);
}
