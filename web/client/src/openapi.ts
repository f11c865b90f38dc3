// Generated from the gateway's /openapi.json by `npm run openapi` (web/client/scripts/openapi.mjs).
// Do not edit; `npm run openapi:check` (run by `make test`) fails when it is stale.

export interface paths {
    "/_matrix/app/v1/ping": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Synapse's ping */
        post: operations["ping__matrix_app_v1_ping_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/_matrix/app/v1/rooms/{alias}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Synapse asks for a room alias in our namespace */
        get: operations["query_alias__matrix_app_v1_rooms__alias__get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/_matrix/app/v1/transactions/{txn_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        /** Synapse pushes a transaction of events */
        put: operations["transaction__matrix_app_v1_transactions__txn_id__put"];
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/_matrix/app/v1/users/{user_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Synapse asks whether a user in our namespace exists */
        get: operations["query_user__matrix_app_v1_users__user_id__get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/city/feed": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Feed */
        get: operations["feed_city_feed_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/city/media/{server_name}/{media_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Get Media
         * @description A file a Matrix message attached (its `attachment.url`), through the appservice.
         *
         *     413 `payload_too_large` when it is larger than CITY_MEDIA_MAX_BYTES (known from
         *     its declared size; a file that turns out larger while streaming is cut off).
         */
        get: operations["get_media_city_media__server_name___media_id__get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/city/presence": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Presence List
         * @description Each user's state, in the order asked; users never seen are `offline`.
         */
        get: operations["presence_list_city_presence_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/city/rooms": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List Rooms */
        get: operations["list_rooms_city_rooms_get"];
        put?: never;
        /** Create Room */
        post: operations["create_room_city_rooms_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/city/rooms/{room_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Get Room
         * @description The room and its latest messages. A bearer token is optional; with one (it must
         *     be valid: else 401), reactions' `me` is relative to its user.
         */
        get: operations["get_room_city_rooms__room_id__get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/city/rooms/{room_id}/members": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Room Members */
        get: operations["room_members_city_rooms__room_id__members_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/city/rooms/{room_id}/messages": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * List Messages
         * @description An older page, oldest first; a bearer token is optional, as for the room.
         */
        get: operations["list_messages_city_rooms__room_id__messages_get"];
        put?: never;
        /**
         * Post Message
         * @description Post as the token's user; the same `client_msg_id` again returns the first (200).
         *
         *     Normally answered by `FastPaths` (gateway.http.fastpath) before this route; both
         *     call `handle_post_message`, so the answers are the same.
         */
        post: operations["post_message_city_rooms__room_id__messages_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/city/rooms/{room_id}/messages/{message_id}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        post?: never;
        /**
         * Delete Message
         * @description Delete your own message (403 `forbidden` for anyone else's): it leaves the
         *     history and the feed. Announced as `room.message_deleted`; redacted in Matrix.
         */
        delete: operations["delete_message_city_rooms__room_id__messages__message_id__delete"];
        options?: never;
        head?: never;
        /**
         * Edit Message
         * @description Replace the body of your own message (403 `forbidden` for anyone else's).
         *
         *     Announced as `room.message_edited`; in Matrix the ghost sends an `m.replace`.
         *     Counts against the per-user message limit (429 `rate_limited`).
         */
        patch: operations["edit_message_city_rooms__room_id__messages__message_id__patch"];
        trace?: never;
    };
    "/city/rooms/{room_id}/messages/{message_id}/reactions/{key}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        /**
         * Add Reaction
         * @description React with `key` (again: nothing changes). The message with its reactions.
         *
         *     Announced as `room.reaction` (`added: true`); an `m.reaction` in Matrix.
         */
        put: operations["add_reaction_city_rooms__room_id__messages__message_id__reactions__key__put"];
        post?: never;
        /**
         * Remove Reaction
         * @description Take back your reaction `key` (none there: nothing changes). The message after.
         *
         *     Announced as `room.reaction` (`added: false`); its `m.reaction` is redacted.
         */
        delete: operations["remove_reaction_city_rooms__room_id__messages__message_id__reactions__key__delete"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/city/search": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Search
         * @description A bearer token is optional, as for room history; with one (it must be valid:
         *     else 401), reactions' `me` is relative to its user.
         */
        get: operations["search_city_search_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/city/stats": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Stats */
        get: operations["stats_city_stats_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/healthz": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Healthz
         * @description The process is alive (no dependency is asked).
         */
        get: operations["healthz_healthz_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/internal/matrix/presence/online": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Presence heartbeat (also sendBeacon's text/plain)
         * @description Online/away heartbeat, or `status: offline` for one device (the tab closing).
         *
         *     Body `{user_id, status?, device_id?, last_active_ago?, access_token?}` as
         *     application/json or text/plain; the answer is the user's resulting state. Auth:
         *     the internal service token (any user) or the user's own JWT, in the
         *     Authorization header or as `access_token` in the body.
         */
        post: operations["presence_online_internal_matrix_presence_online_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/metrics": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Metrics
         * @description Prometheus metrics (`city_*`, plus the process's own).
         */
        get: operations["metrics_metrics_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/readyz": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Readyz
         * @description PostgreSQL, Redis and (when configured) Synapse answer within 2 s each.
         */
        get: operations["readyz_readyz_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/secondme/history": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * History
         * @description Your latest `limit` messages with Second Me, oldest first.
         */
        get: operations["history_secondme_history_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/secondme/invoke": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Invoke
         * @description Ask Second Me; `history` is your latest messages after this exchange, oldest first.
         */
        post: operations["invoke_secondme_invoke_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
}
export type webhooks = Record<string, never>;
export interface components {
    schemas: {
        /**
         * AttachmentOut
         * @description A Matrix image, file, video or audio message's file (SPEC §13).
         */
        AttachmentOut: {
            /**
             * Kind
             * @enum {string}
             */
            kind: "image" | "file" | "video" | "audio";
            /**
             * Mimetype
             * @description as the sender declared it
             */
            mimetype: string | null;
            /**
             * Name
             * @description the file name (the message body is the caption or name)
             */
            name: string;
            /**
             * Size
             * @description bytes, as the sender declared it
             */
            size: number | null;
            /**
             * Url
             * @description GET it from this gateway: `/city/media/{server_name}/{media_id}`
             * @example /city/media/example.org/AbCdEf
             */
            url: string;
        };
        /**
         * BodyTooLargeOut
         * @description 413 from the gateway's body limit, in the city's error shape.
         */
        BodyTooLargeOut: {
            /** Code */
            code: string;
            /** Message */
            message: string;
        };
        /** CreateRoomBody */
        CreateRoomBody: {
            /** Description */
            description?: string | null;
            /** Name */
            name: string;
            /**
             * Slug
             * @description the room id is `room_city_{slug}`
             */
            slug: string;
        };
        /** EditMessageBody */
        EditMessageBody: {
            /**
             * Body
             * @description the new body; at most CITY_MESSAGE_MAX_CHARS characters (default 4000)
             */
            body: string;
        };
        /**
         * EmptyOut
         * @description `{}`: success, as the appservice API answers it.
         */
        EmptyOut: Record<string, never>;
        /** ErrorDetail */
        ErrorDetail: {
            /** Loc */
            loc: string[];
            /** Msg */
            msg: string;
        };
        /**
         * ErrorOut
         * @description Every error (SPEC §5): a stable snake_case `code` and a human `message`.
         */
        ErrorOut: {
            /**
             * Code
             * @description stable, snake_case: what a program branches on
             */
            code: string;
            /**
             * Details
             * @description 422 `validation_error` only: where the request is wrong
             */
            details?: components["schemas"]["ErrorDetail"][] | null;
            /**
             * Message
             * @description for people; may change
             */
            message: string;
        };
        /** FeedEventOut */
        FeedEventOut: {
            /** Agent Id */
            agent_id: string | null;
            /**
             * Created At
             * Format: date-time
             */
            created_at: string;
            /**
             * Id
             * @example evt_city_01J0000000000000000000000
             */
            id: string;
            /**
             * Kind
             * @description room_message, agent_reply or system
             */
            kind: string;
            /**
             * Payload
             * @description body, snippet (≤ 140 chars), source
             */
            payload: {
                [key: string]: unknown;
            };
            /** Room Id */
            room_id: string | null;
            /** User Id */
            user_id: string | null;
        };
        /** HTTPValidationError */
        HTTPValidationError: {
            /** Detail */
            detail?: components["schemas"]["ValidationError"][];
        };
        /** HealthOut */
        HealthOut: {
            /**
             * Status
             * @constant
             */
            status: "ok";
        };
        /** HeartbeatOut */
        HeartbeatOut: {
            /**
             * Heartbeat Seconds
             * @description when to send the next heartbeat
             */
            heartbeat_seconds: number;
            /**
             * Matrix User Id
             * @description the user's ghost; null without the bridge
             */
            matrix_user_id: string | null;
            /**
             * Status
             * @enum {string}
             */
            status: "online" | "away" | "offline";
            /** User Id */
            user_id: string;
        };
        /** HistoryItemOut */
        HistoryItemOut: {
            /** Content */
            content: string;
            /**
             * Created At
             * Format: date-time
             */
            created_at: string;
            /**
             * Role
             * @enum {string}
             */
            role: "user" | "assistant";
        };
        /** InvokeBody */
        InvokeBody: {
            /** Prompt */
            prompt: string;
        };
        /** InvokeOut */
        InvokeOut: {
            /**
             * History
             * @description your latest messages, oldest first
             */
            history: components["schemas"]["HistoryItemOut"][];
            /** Reply */
            reply: string;
        };
        /**
         * MatrixErrorOut
         * @description Matrix's error shape (Synapse is the client of these routes).
         */
        MatrixErrorOut: {
            /** Errcode */
            errcode: string;
            /** Error */
            error: string;
        };
        /**
         * MemberOut
         * @description A city user (`user_id`) connected to the room now, or a Matrix user
         *     (`matrix_user_id`) joined to its Matrix room; exactly one of the two is present.
         */
        MemberOut: {
            /** Display Name */
            display_name: string | null;
            /**
             * Matrix User Id
             * @description a real Matrix user (not a ghost)
             */
            matrix_user_id?: string | null;
            /**
             * Status
             * @description city users: online | away; Matrix users, in Matrix's names: online | unavailable | offline
             * @enum {string}
             */
            status: "online" | "away" | "unavailable" | "offline";
            /**
             * User Id
             * @description a city user
             */
            user_id?: string | null;
        };
        /** MembersOut */
        MembersOut: {
            /** Members */
            members: components["schemas"]["MemberOut"][];
        };
        /** MessageOut */
        MessageOut: {
            /** @description a file from Matrix */
            attachment: components["schemas"]["AttachmentOut"] | null;
            /** Author Agent Id */
            author_agent_id: string | null;
            /** Author Matrix Id */
            author_matrix_id: string | null;
            /** Author User Id */
            author_user_id: string | null;
            /** Body */
            body: string;
            /**
             * Created At
             * Format: date-time
             */
            created_at: string;
            /**
             * Edited At
             * @description the last edit (city or Matrix), if any
             */
            edited_at: string | null;
            /**
             * Id
             * @example m_city_01J0000000000000000000000
             */
            id: string;
            /**
             * Reactions
             * @description per key, in the order first used; `me` is relative to the caller (false without a token, and in socket frames)
             */
            reactions: components["schemas"]["ReactionOut"][];
            /**
             * Reply To
             * @description the message this one replies to (same room; it may have been deleted)
             */
            reply_to: string | null;
            /** Room Id */
            room_id: string;
        };
        /** NotReadyOut */
        NotReadyOut: {
            /**
             * Checks
             * @description `ok`, or what went wrong, per dependency
             */
            checks: {
                [key: string]: string;
            };
            /**
             * Code
             * @description stable, snake_case: what a program branches on
             */
            code: string;
            /**
             * Details
             * @description 422 `validation_error` only: where the request is wrong
             */
            details?: components["schemas"]["ErrorDetail"][] | null;
            /**
             * Message
             * @description for people; may change
             */
            message: string;
            /**
             * Status
             * @constant
             */
            status: "not_ready";
        };
        /** PresenceListOut */
        PresenceListOut: {
            /** Users */
            users: components["schemas"]["PresenceUserOut"][];
        };
        /** PresenceUserOut */
        PresenceUserOut: {
            /**
             * Last Active Ago
             * @description milliseconds
             */
            last_active_ago: number;
            /**
             * Status
             * @enum {string}
             */
            status: "online" | "away" | "offline";
            /** User Id */
            user_id: string;
        };
        /** ReactionOut */
        ReactionOut: {
            /** Count */
            count: number;
            /**
             * Key
             * @description an emoji or short text, 1-64 characters
             * @example 👍
             */
            key: string;
            /**
             * Me
             * @description the caller is among the reactors
             */
            me: boolean;
        };
        /** ReadyOut */
        ReadyOut: {
            /**
             * Checks
             * @description `ok` for each dependency
             */
            checks: {
                [key: string]: string;
            };
            /**
             * Status
             * @constant
             */
            status: "ready";
        };
        /** RoomOut */
        RoomOut: {
            /**
             * Created At
             * Format: date-time
             */
            created_at: string;
            /** Description */
            description: string | null;
            /**
             * Id
             * @example room_city_general
             */
            id: string;
            /** Is Default */
            is_default: boolean;
            /**
             * Last Event
             * Format: date-time
             * @description the newest message's time, else creation
             */
            last_event: string;
            /** Matrix Alias */
            matrix_alias: string | null;
            /** Matrix Room Id */
            matrix_room_id: string | null;
            /**
             * Members Online
             * @description distinct users connected to the room now
             */
            members_online: number;
            /** Name */
            name: string;
            /** Slug */
            slug: string;
        };
        /** RoomPageOut */
        RoomPageOut: {
            /** Members Online */
            members_online: number;
            /**
             * Messages
             * @description the latest 50, oldest first
             */
            messages: components["schemas"]["MessageOut"][];
            room: components["schemas"]["RoomOut"];
        };
        /** SearchPageOut */
        SearchPageOut: {
            /**
             * Next
             * @description opaque cursor: pass it as `before` for the next page; null at the end
             */
            next: string | null;
            /**
             * Results
             * @description exact matches (every word in the form typed) first, then other inflections of Ukrainian words; newest first within each
             */
            results: components["schemas"]["SearchResultOut"][];
        };
        /** SearchResultOut */
        SearchResultOut: {
            /**
             * Highlight
             * @description the body (or its best fragment, if long) as HTML-escaped text with matches wrapped in `<mark>…</mark>` — the only markup it contains
             * @example нова <mark>кімната</mark> &lt;b&gt;
             */
            highlight: string;
            message: components["schemas"]["MessageOut"];
        };
        /** StatsOut */
        StatsOut: {
            /** Messages 24H */
            messages_24h: number;
            /** Rooms */
            rooms: number;
            /**
             * Users Online
             * @description online or away; null while Redis is down
             */
            users_online: number | null;
        };
        /** ValidationError */
        ValidationError: {
            /** Context */
            ctx?: Record<string, never>;
            /** Input */
            input?: unknown;
            /** Location */
            loc: (string | number)[];
            /** Message */
            msg: string;
            /** Error Type */
            type: string;
        };
    };
    responses: never;
    parameters: never;
    requestBodies: never;
    headers: never;
    pathItems: never;
}
export type $defs = Record<string, never>;
export interface operations {
    ping__matrix_app_v1_ping_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: {
            content: {
                "application/json": {
                    /** @description not read */
                    transaction_id?: unknown;
                };
            };
        };
        responses: {
            /** @description `{}` */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EmptyOut"];
                };
            };
            /** @description M_NOT_JSON / M_BAD_JSON: the body is not a JSON object (with an `events` list) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description M_UNAUTHORIZED: no hs_token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description M_FORBIDDEN: not Synapse's hs_token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description M_UNRECOGNIZED: the bridge is off; M_NOT_FOUND: no such user or room */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description over the body limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["BodyTooLargeOut"];
                };
            };
        };
    };
    query_alias__matrix_app_v1_rooms__alias__get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                alias: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description `{}` */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EmptyOut"];
                };
            };
            /** @description M_UNAUTHORIZED: no hs_token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description M_FORBIDDEN: not Synapse's hs_token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description M_UNRECOGNIZED: the bridge is off; M_NOT_FOUND: no such user or room */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description over the body limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["BodyTooLargeOut"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
            /** @description M_UNKNOWN: the homeserver refused a call this answer needs */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description M_UNKNOWN: the homeserver could not be reached (Retry-After) */
            503: {
                headers: {
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
        };
    };
    transaction__matrix_app_v1_transactions__txn_id__put: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                txn_id: string;
            };
            cookie?: never;
        };
        requestBody?: {
            content: {
                "application/json": {
                    /** @description the same, under MSC2409's unstable name */
                    "de.sorunome.msc2409.ephemeral"?: unknown[];
                    /** @description EDUs: m.typing, m.presence (MSC2409) */
                    ephemeral?: unknown[];
                    /** @description Matrix events; malformed ones are ignored */
                    events?: unknown[];
                };
            };
        };
        responses: {
            /** @description `{}` */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EmptyOut"];
                };
            };
            /** @description M_NOT_JSON / M_BAD_JSON: the body is not a JSON object (with an `events` list) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description M_UNAUTHORIZED: no hs_token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description M_FORBIDDEN: not Synapse's hs_token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description M_UNRECOGNIZED: the bridge is off; M_NOT_FOUND: no such user or room */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description over the body limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["BodyTooLargeOut"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
            /** @description M_UNKNOWN: the homeserver refused a call this answer needs */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description M_UNKNOWN: the homeserver could not be reached (Retry-After) */
            503: {
                headers: {
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
        };
    };
    query_user__matrix_app_v1_users__user_id__get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                user_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description `{}` */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EmptyOut"];
                };
            };
            /** @description M_UNAUTHORIZED: no hs_token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description M_FORBIDDEN: not Synapse's hs_token */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description M_UNRECOGNIZED: the bridge is off; M_NOT_FOUND: no such user or room */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description over the body limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["BodyTooLargeOut"];
                };
            };
            /** @description Validation Error */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HTTPValidationError"];
                };
            };
            /** @description M_UNKNOWN: the homeserver refused a call this answer needs */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
            /** @description M_UNKNOWN: the homeserver could not be reached (Retry-After) */
            503: {
                headers: {
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MatrixErrorOut"];
                };
            };
        };
    };
    feed_city_feed_get: {
        parameters: {
            query?: {
                limit?: number;
                before?: string | null;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["FeedEventOut"][];
                };
            };
            /** @description No such resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    get_media_city_media__server_name___media_id__get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description the server part of the file's mxc:// URI */
                server_name: string;
                /** @description the media id of the file's mxc:// URI */
                media_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the file, streamed */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/octet-stream": string;
                };
            };
            /** @description `If-None-Match` matched the ETag */
            304: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description No such resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description An upstream service (Agents Core, the homeserver) failed */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    presence_list_city_presence_get: {
        parameters: {
            query?: {
                /** @description repeat for several users (at most 200) */
                user_id?: string[] | null;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["PresenceListOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    list_rooms_city_rooms_get: {
        parameters: {
            query?: {
                limit?: number;
                offset?: number;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["RoomOut"][];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    create_room_city_rooms_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["CreateRoomBody"];
            };
        };
        responses: {
            /** @description Successful Response */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["RoomOut"];
                };
            };
            /** @description The body could not be parsed (not JSON) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Missing, invalid or expired token */
            401: {
                headers: {
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Conflict with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Over a per-user limit; retry after `Retry-After` seconds */
            429: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    get_room_city_rooms__room_id__get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description `room_city_{slug}` */
                room_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["RoomPageOut"];
                };
            };
            /** @description Missing, invalid or expired token */
            401: {
                headers: {
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description No such resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    room_members_city_rooms__room_id__members_get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description `room_city_{slug}` */
                room_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MembersOut"];
                };
            };
            /** @description No such resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    list_messages_city_rooms__room_id__messages_get: {
        parameters: {
            query?: {
                before?: string | null;
                limit?: number;
            };
            header?: never;
            path: {
                /** @description `room_city_{slug}` */
                room_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MessageOut"][];
                };
            };
            /** @description Missing, invalid or expired token */
            401: {
                headers: {
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description No such resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    post_message_city_rooms__room_id__messages_post: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description `room_city_{slug}` */
                room_id: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": {
                    /**
                     * Body
                     * @description at most CITY_MESSAGE_MAX_CHARS characters (default 4000)
                     */
                    body: string;
                    /**
                     * Client Msg Id
                     * @description idempotency key: the same one again returns the first message (200)
                     */
                    client_msg_id?: string | null;
                    /**
                     * Reply To
                     * @description the id of the message this one replies to, in the same room (422 `invalid_reply_to`, 404 `reply_to_not_found`)
                     */
                    reply_to?: string | null;
                    /**
                     * User Id
                     * @description optional; if present it must be the token's user (else 403)
                     */
                    user_id?: string | null;
                };
            };
        };
        responses: {
            /** @description a retry with a known client_msg_id */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MessageOut"];
                };
            };
            /** @description Successful Response */
            201: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MessageOut"];
                };
            };
            /** @description Missing, invalid or expired token */
            401: {
                headers: {
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The token may not do this */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description No such resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Conflict with the current state */
            409: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Unsupported Content-Type */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Over a per-user limit; retry after `Retry-After` seconds */
            429: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    delete_message_city_rooms__room_id__messages__message_id__delete: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description `room_city_{slug}` */
                room_id: string;
                /** @description `m_city_…` */
                message_id: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            /** @description Missing, invalid or expired token */
            401: {
                headers: {
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The token may not do this */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description No such resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    edit_message_city_rooms__room_id__messages__message_id__patch: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description `room_city_{slug}` */
                room_id: string;
                /** @description `m_city_…` */
                message_id: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["EditMessageBody"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MessageOut"];
                };
            };
            /** @description The body could not be parsed (not JSON) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Missing, invalid or expired token */
            401: {
                headers: {
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The token may not do this */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description No such resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Over a per-user limit; retry after `Retry-After` seconds */
            429: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    add_reaction_city_rooms__room_id__messages__message_id__reactions__key__put: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description `room_city_{slug}` */
                room_id: string;
                /** @description `m_city_…` */
                message_id: string;
                /** @description the reaction: an emoji or short text, 1-64 characters, no control characters (percent-encoded in the path; 422 `invalid_reaction_key`) */
                key: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MessageOut"];
                };
            };
            /** @description Missing, invalid or expired token */
            401: {
                headers: {
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description No such resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Over a per-user limit; retry after `Retry-After` seconds */
            429: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    remove_reaction_city_rooms__room_id__messages__message_id__reactions__key__delete: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description `room_city_{slug}` */
                room_id: string;
                /** @description `m_city_…` */
                message_id: string;
                /** @description the reaction: an emoji or short text, 1-64 characters, no control characters (percent-encoded in the path; 422 `invalid_reaction_key`) */
                key: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MessageOut"];
                };
            };
            /** @description Missing, invalid or expired token */
            401: {
                headers: {
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description No such resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Over a per-user limit; retry after `Retry-After` seconds */
            429: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    search_city_search_get: {
        parameters: {
            query: {
                /** @description words (Ukrainian or English); websearch syntax: "a phrase", -excluded, or. Blank: 422 `empty_query`; longer than 256 characters (trimmed): 422 `query_too_long` */
                q: string;
                /** @description only this room (404 `room_not_found` if unknown) */
                room_id?: string | null;
                limit?: number;
                /** @description the `next` of the previous page (422 `invalid_cursor` otherwise) */
                before?: string | null;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SearchPageOut"];
                };
            };
            /** @description Missing, invalid or expired token */
            401: {
                headers: {
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description No such resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    stats_city_stats_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["StatsOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    healthz_healthz_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HealthOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    presence_online_internal_matrix_presence_online_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": {
                    /**
                     * Access Token
                     * @description the token when no Authorization header can be set
                     */
                    access_token?: string | null;
                    /** Device Id */
                    device_id?: string | null;
                    /**
                     * Last Active Ago
                     * @description milliseconds
                     */
                    last_active_ago?: number | null;
                    /** Status */
                    status?: ("online" | "away" | "unavailable" | "offline") | null;
                    /** User Id */
                    user_id: string;
                };
                "text/plain": {
                    /**
                     * Access Token
                     * @description the token when no Authorization header can be set
                     */
                    access_token?: string | null;
                    /** Device Id */
                    device_id?: string | null;
                    /**
                     * Last Active Ago
                     * @description milliseconds
                     */
                    last_active_ago?: number | null;
                    /** Status */
                    status?: ("online" | "away" | "unavailable" | "offline") | null;
                    /** User Id */
                    user_id: string;
                };
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HeartbeatOut"];
                };
            };
            /** @description Missing, invalid or expired token */
            401: {
                headers: {
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The token may not do this */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Unsupported Content-Type */
            415: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Over a per-user limit; retry after `Retry-After` seconds */
            429: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    metrics_metrics_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Prometheus text exposition format */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/plain; version=1.0.0; charset=utf-8": string;
                };
            };
            /** @description Request body over the configured limit */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    readyz_readyz_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ReadyOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description a dependency does not answer */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["NotReadyOut"];
                };
            };
        };
    };
    history_secondme_history_get: {
        parameters: {
            query?: {
                limit?: number;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HistoryItemOut"][];
                };
            };
            /** @description Missing, invalid or expired token */
            401: {
                headers: {
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The token may not do this */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
    invoke_secondme_invoke_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["InvokeBody"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["InvokeOut"];
                };
            };
            /** @description The body could not be parsed (not JSON) */
            400: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Missing, invalid or expired token */
            401: {
                headers: {
                    "WWW-Authenticate"?: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The token may not do this */
            403: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Request body over the configured limit (CITY_MAX_REQUEST_BYTES) */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description The request is well formed but its values are not acceptable */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description Over a per-user limit; retry after `Retry-After` seconds */
            429: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description An upstream service (Agents Core, the homeserver) failed */
            502: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description A dependency (PostgreSQL, Redis, a service) is unavailable */
            503: {
                headers: {
                    /** @description seconds to wait before retrying */
                    "Retry-After"?: number;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
            /** @description An upstream service timed out */
            504: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorOut"];
                };
            };
        };
    };
}
